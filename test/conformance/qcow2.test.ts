// Conformance against qemu-img: the raw and qcow2 fixtures (see suite.ts).
import { conformanceSuite } from './suite.ts';

/** Fixtures of the formats with files of their own. */
const OTHERS = ['vmdk-', 'vpc-', 'vhdx-', 'vdi-', 'parallels-', 'qed-', 'qcow-'];

conformanceSuite((fx) => !OTHERS.some((p) => fx.name.startsWith(p)));
