// sparsify (convert with zero detection into the input's own format, and
// what it saved), the free-range hint of the convert pipeline, -p progress
// and how convert reports an output it cannot write. Images are made here by
// qemu-img and qemu-io; outputs are judged by qemu-img (compare, check, info)
// and the disk space by qemu-img's actual-size.
import { beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { ok, scratchDir } from '../helpers/scratch.ts';
import { describeRun, QEMU_IMG, qemuImg, run, VDISK, vdisk } from '../helpers/run.ts';
import { openImage } from '../../engine/image.ts';
import { convertImage } from '../../engine/ops/convert.ts';
import { rawWriter } from '../../engine/drivers/raw/writer.ts';
import { NodeFileSink, nodeWorkspace } from '../../cli/node-io.ts';

const s = scratchDir('sparsify');
const MiB = 2 ** 20;
const io = (fmt: string, file: string, cmds: string[]) => ok('qemu-io', run('qemu-io', ['-f', fmt, ...cmds.flatMap((c) => ['-c', c]), file], { cwd: s.dir }));
const info = (name: string) => JSON.parse(qemuImg(['info', '--output=json', name], { cwd: s.dir }).stdout);
const sparsify = (args: string[]) => vdisk(['sparsify', ...args], { cwd: s.dir });
/** Nothing but the files a test expects: no output, no temporary left behind. */
const files = () => readdirSync(s.dir).sort();

/** Data, zeros written over data (`write -P 0`), a zeroed range (`write -z`), data in the last MiB. */
const WRITES = ['write -P 0x11 0 4M', 'write -P 0 1M 2M', 'write -P 0x22 8M 8M', 'write -z 10M 4M', 'write -P 0x33 31M 1M'];

beforeAll(() => {
  ok('create raw', qemuImg(['create', '-q', '-f', 'raw', 'src.raw', '32M'], { cwd: s.dir }));
  io('raw', 'src.raw', WRITES);
  ok('create qcow2', qemuImg(['create', '-q', '-f', 'qcow2', 'src.qcow2', '32M'], { cwd: s.dir }));
  io('qcow2', 'src.qcow2', WRITES);
  ok('create parallels', qemuImg(['create', '-q', '-f', 'parallels', 'src.parallels', '8M'], { cwd: s.dir }));
  io('parallels', 'src.parallels', ['write -P 0x44 0 1M', 'write -P 0 1M 1M']);
});

/** `saved S: A -> B (a -> b bytes)` or `grew by …`, parsed. */
function saved(stdout: string): { before: number; after: number } {
  const m = /^(?:saved|grew by) \d[\d.]* [KMGTPE]?i?B: \d[\d.]* [KMGTPE]?i?B -> \d[\d.]* [KMGTPE]?i?B \((\d+) -> (\d+) bytes\)\n$/.exec(stdout);
  expect(m, `sparsify printed ${JSON.stringify(stdout)}`).not.toBeNull();
  return { before: Number(m![1]), after: Number(m![2]) };
}

describe('sparsify', () => {
  for (const fmt of ['raw', 'qcow2']) {
    it(`keeps a ${fmt} image's format, drops its zeros and reports the disk space saved`, () => {
      const out = `kept.${fmt}`;
      const r = sparsify([`src.${fmt}`, out]);
      ok('vdisk sparsify', r);
      expect(info(out).format).toBe(fmt);
      ok('qemu-img compare', qemuImg(['compare', `src.${fmt}`, out], { cwd: s.dir }));
      if (fmt === 'qcow2') ok('qemu-img check', qemuImg(['check', out], { cwd: s.dir }));
      const { before, after } = saved(r.stdout);
      // What qemu-img calls each file's actual size, the disk space it takes.
      expect(before).toBe(info(`src.${fmt}`)['actual-size']);
      expect(after).toBe(info(out)['actual-size']);
      // 13 MiB written in the source, of which 6 MiB zeros.
      expect(after).toBeLessThan(before - 5 * MiB);
    });
  }

  it('writes the format -O names, with its -o options', () => {
    ok('vdisk sparsify', sparsify(['-O', 'qcow2', '-o', 'cluster_size=4096', 'src.raw', 'as.qcow2']));
    const i = info('as.qcow2');
    expect([i.format, i['cluster-size']]).toEqual(['qcow2', 4096]);
    ok('qemu-img check', qemuImg(['check', 'as.qcow2'], { cwd: s.dir }));
    ok('qemu-img compare', qemuImg(['compare', 'src.raw', 'as.qcow2'], { cwd: s.dir }));
  });

  it('keeps short zero runs with -S larger than them, and prints nothing with -q', () => {
    const r = sparsify(['-q', '-S', '64M', 'src.raw', 'dense.raw']);
    ok('vdisk sparsify -q', r);
    expect(r.stdout).toBe('');
    ok('qemu-img compare', qemuImg(['compare', 'src.raw', 'dense.raw'], { cwd: s.dir }));
    // No zero run reaches 64 MiB, so written zeros stay.
    expect(info('dense.raw')['actual-size']).toBeGreaterThan(info('kept.raw')['actual-size']);
  });

  it('refuses a format it cannot write unless -O names one, leaving nothing behind', () => {
    const before = files();
    const r = sparsify(['src.parallels', 'p.out']);
    expect(r.status, describeRun('vdisk sparsify', r)).toBe(1);
    expect(r.stderr).toBe("vdisk: Writing the 'parallels' format is not supported: choose an output format with -O\n");
    expect(files()).toEqual(before);
    ok('vdisk sparsify -O raw', sparsify(['-O', 'raw', 'src.parallels', 'p.raw']));
    ok('qemu-img compare', qemuImg(['compare', 'src.parallels', 'p.raw'], { cwd: s.dir }));
  });

  it('reports bad arguments and inputs as qemu-img would, leaving nothing behind', () => {
    const before = files();
    const missing = sparsify(['nothere.qcow2', 'x.qcow2']);
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/^vdisk: Could not open 'nothere.qcow2': .*No such file or directory\n$/);
    const oneFile = sparsify(['src.raw']);
    expect(oneFile.status).toBe(1);
    expect(oneFile.stderr).toBe('vdisk: Expecting one image file name and one output file name\n');
    const badOption = sparsify(['-O', 'qcow2', '-o', 'cluster_size=3', 'src.raw', 'x.qcow2']);
    expect(badOption.status).toBe(1);
    expect(badOption.stderr).toContain('Cluster size must be a power of two');
    expect(files()).toEqual(before);
  });
});

describe('the free-range hint', () => {
  it('leaves out the units wholly inside the ranges it names, whatever they hold', async () => {
    const image = await openImage(await nodeWorkspace.open(s.path('src.raw')), { opener: nodeWorkspace.opener, format: 'raw' });
    const sink = await NodeFileSink.create(s.path('hinted.raw'));
    const writer = await rawWriter.create(sink, { size: image.size, options: new Map(), compress: false }, () => Promise.reject(new Error('one file')));
    const asked: number[] = [];
    // 8 MiB + 100 … 10 MiB holds 0x22: the 4 KiB unit at 8 MiB is only partly free and stays.
    await convertImage(image, writer, {
      freeRanges: async (start, length) => {
        asked.push(start, length);
        return [{ start: 8 * MiB + 100, length: 2 * MiB - 100 }];
      },
    });
    expect(asked.length).toBeGreaterThan(0);
    ok('qemu-img convert', qemuImg(['convert', '-O', 'raw', 'src.raw', 'expected.raw'], { cwd: s.dir }));
    io('raw', 'expected.raw', [`write -z ${8 * MiB + 4096} ${2 * MiB - 4096}`]);
    const r = qemuImg(['compare', '-f', 'raw', '-F', 'raw', 'hinted.raw', 'expected.raw'], { cwd: s.dir });
    expect(r.stdout).toBe('Images are identical.\n');
  });
});

describe('-p progress', () => {
  /** The lines of a progress display: what the carriage returns separate. */
  const lines = (stdout: string) => stdout.split(/\r\n?/).filter((l) => l !== '');

  for (const cmd of ['convert', 'sparsify']) {
    it(`${cmd} prints qemu-img's percentages with a rate and ETA, and qemu-img's last line`, () => {
      const q = qemuImg(['convert', '-p', '-O', 'qcow2', 'src.qcow2', `pq.${cmd}.qcow2`], { cwd: s.dir });
      ok('qemu-img convert -p', q);
      const args = cmd === 'convert' ? ['convert', '-p', '-O', 'qcow2'] : ['sparsify', '-p'];
      const v = vdisk([...args, 'src.qcow2', `pv.${cmd}.qcow2`], { cwd: s.dir });
      ok(`vdisk ${cmd} -p`, v);
      const percent = /^ {4}\(\d{1,3}\.\d\d\/100%\)/;
      for (const l of lines(q.stdout)) expect(l).toMatch(percent);
      const progress = cmd === 'convert' ? lines(v.stdout) : lines(v.stdout).slice(0, -1);
      expect(progress[0]).toBe(lines(q.stdout)[0]);
      // Spaces blank out what a longer line before left on screen.
      for (const l of progress) expect(l).toMatch(/^ {4}\(\d{1,3}\.\d\d\/100%\)(?: {2}\d[\d.]* [KMGTPE]?i?B\/s {2}ETA \d+:\d\d)? *$/);
      expect(progress.some((l) => / ETA /.test(l))).toBe(true);
      // The last line is qemu-img's, ended as qemu-img ends it.
      expect(v.stdout).toMatch(/ {4}\(100\.00\/100%\) *\r\n/);
      expect(progress[progress.length - 1]!.trimEnd()).toBe(lines(q.stdout).at(-1));
    });
  }
});

describe('an output convert cannot write', () => {
  it('is reported as qemu-img reports it when it cannot be created', () => {
    mkdirSync(s.path('adir'));
    for (const dst of ['nodir/x.qcow2', 'adir']) {
      const q = qemuImg(['convert', '-O', 'qcow2', 'src.raw', dst], { cwd: s.dir });
      const v = vdisk(['convert', '-O', 'qcow2', 'src.raw', dst], { cwd: s.dir });
      expect(v.status).toBe(q.status);
      expect(v.stderr).toBe(q.stderr.replace(/^qemu-img:/, 'vdisk:'));
    }
  });

  it('is never replaced when it is not a regular file', () => {
    execFileSync('mkfifo', [s.path('fifo')]);
    const v = vdisk(['convert', '-O', 'raw', 'src.raw', 'fifo'], { cwd: s.dir });
    expect(v.status).toBe(1);
    expect(v.stderr).toBe("vdisk: fifo: error while converting raw: Could not create 'fifo': Not a regular file (vdisk writes images to regular files only)\n");
    expect(readdirSync(s.dir).filter((f) => f.includes('fifo'))).toEqual(['fifo']);
  });

  // The first MiBs are written from the main thread, the rest by the file's write thread: a failure in either reads the same.
  it.each([
    ['from the main thread', 4],
    ['by the write thread', 32],
  ])('stops at a write that fails %s with qemu-img’s message and leaves nothing behind', (_, limitMiB) => {
    const src = `big${limitMiB}.raw`;
    ok('create raw', qemuImg(['create', '-q', '-f', 'raw', src, '64M'], { cwd: s.dir }));
    io('raw', src, ['write -P 0x5a 0 48M']);
    // A file size limit (in the shell's 512-byte blocks) makes the write past it fail with EFBIG (SIGXFSZ ignored).
    const limited = (cmd: string, args: string[]) => run('sh', ['-c', `trap "" XFSZ; ulimit -f ${limitMiB * 2048}; exec "$@"`, 'sh', cmd, ...args], { cwd: s.dir });
    const q = limited(QEMU_IMG, ['convert', '-O', 'qcow2', src, 'big.q.qcow2']);
    const v = limited(process.execPath, [VDISK, 'convert', '-O', 'qcow2', src, 'big.v.qcow2']);
    const message = /error while writing at byte \d+: File too large\n$/;
    expect(q.stderr).toMatch(message);
    expect(v.status).toBe(q.status);
    expect(v.stderr).toMatch(/^vdisk: big\.v\.qcow2: error while writing at byte \d+: File too large\n$/);
    const at = Number(/at byte (\d+)/.exec(v.stderr)![1]);
    expect(at, 'where the file reached its limit').toBe(limitMiB * MiB);
    expect(existsSync(s.path('big.v.qcow2'))).toBe(false);
    expect(readdirSync(s.dir).filter((f) => f.includes('big.v'))).toEqual([]);
  });
});
