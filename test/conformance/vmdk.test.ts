// Conformance against qemu-img: the vmdk fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

conformanceSuite((fx) => fx.name.startsWith('vmdk-'));
