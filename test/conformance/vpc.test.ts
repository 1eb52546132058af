// Conformance against qemu-img: the vpc fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

conformanceSuite((fx) => fx.name.startsWith('vpc-'));
