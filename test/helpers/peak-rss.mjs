// Preloaded with `node --import` into a vdisk run: reports the process's peak
// resident set size (KiB) on stderr as its last line, for memory-bound tests.
import { writeSync } from 'node:fs';

process.on('exit', () => writeSync(2, `PEAK_RSS_KIB ${process.resourceUsage().maxRSS}\n`));
