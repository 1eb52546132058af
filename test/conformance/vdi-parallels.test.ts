// Conformance against qemu-img: the vdi, parallels fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

conformanceSuite((fx) => fx.name.startsWith('vdi-') || fx.name.startsWith('parallels-'));
