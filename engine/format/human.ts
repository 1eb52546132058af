/**
 * qemu's human-readable number and time formats, so `vdisk` output reads like
 * qemu-img's to someone used to it.
 */
import { qdictOrder, type QValue } from './qemu-json.ts';

const SUFFIXES = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** C's `%0.3g`: three significant digits, ties to even, exponent form outside 1e-4 … 1e3. */
function g3(x: number): string {
  if (x === 0) return '0';
  let exp = Math.floor(Math.log10(Math.abs(x)));
  const scale = 10 ** (2 - exp);
  const y = x * scale;
  // printf rounds an exact tie to even where JavaScript rounds it up (768.5 → "768").
  const tie = y - Math.floor(y) === 0.5 && y / scale === x;
  let digits = tie ? Math.floor(y) + (Math.floor(y) % 2) : Math.round(y);
  if (digits >= 1000) {
    digits /= 10;
    exp += 1;
  }
  const strip = (t: string) => (t.includes('.') ? t.replace(/\.?0+$/, '') : t);
  if (exp < -4 || exp >= 3) {
    const mant = strip((digits / 100).toFixed(2));
    return `${mant}e${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`;
  }
  return strip((digits / 10 ** (2 - exp)).toFixed(Math.max(0, 2 - exp)));
}

/**
 * qemu's size_to_str: the unit switches up once the value reaches 1000 of the
 * current unit, so a size never prints as four integer digits.
 */
export function sizeToStr(bytes: number): string {
  let exp = 0;
  if (bytes > 0) exp = Math.floor(Math.log2(bytes / (1000 / 1024))) + 1;
  const i = Math.max(0, Math.trunc((exp - 1) / 10));
  return `${g3(bytes / 2 ** (i * 10))} ${SUFFIXES[i]}`;
}

/** C's `%#x`: "0" for zero, "0x…" otherwise. */
export function hexAlt(n: number): string {
  return n === 0 ? '0' : '0x' + n.toString(16);
}

const two = (n: number) => String(n).padStart(2, '0');

/** strftime("%Y-%m-%d %H:%M:%S") in local time, as qemu-img prints snapshot dates. */
export function localDateTime(sec: number): string {
  const d = new Date(sec * 1000);
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** A snapshot's VM clock as qemu-img's snapshot table shows it: HH:MM:SS.mmm. */
export function vmClock(nsec: number): string {
  const secs = Math.floor(nsec / 1e9);
  const ms = String(Math.floor(nsec / 1e6) % 1000).padStart(3, '0');
  return `${two(Math.floor(secs / 3600))}:${two(Math.floor(secs / 60) % 60)}:${two(secs % 60)}.${ms}`;
}

/** The format-specific block of `qemu-img info`: keys with dashes as spaces, nested by four spaces. */
export function dumpQObject(value: QValue, indent: number, out: string[]): void {
  const pad = ' '.repeat(indent * 4);
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      const composite = v !== null && typeof v === 'object';
      out.push(`${pad}[${i}]:${composite ? '\n' : ' '}`);
      if (composite) dumpQObject(v, indent + 1, out);
      else out.push(`${String(v)}\n`);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const key of qdictOrder(Object.keys(value).filter((k) => value[k] !== undefined))) {
      const v = value[key]!;
      const composite = v !== null && typeof v === 'object';
      out.push(`${pad}${key.replace(/-/g, ' ')}:${composite ? '\n' : ' '}`);
      if (composite) dumpQObject(v, indent + 1, out);
      else out.push(`${String(v)}\n`);
    }
  } else {
    out.push(`${String(value)}\n`);
  }
}
