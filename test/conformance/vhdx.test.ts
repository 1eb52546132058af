// Conformance against qemu-img: the vhdx fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

conformanceSuite((fx) => fx.name.startsWith('vhdx-'));
