// Conformance against qemu-img: the qed, qcow fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

conformanceSuite((fx) => fx.name.startsWith('qed-') || fx.name.startsWith('qcow-'));
