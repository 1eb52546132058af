/** A qemu-img command line as a person would type it, for the output blocks that show one. */

/** A word as a POSIX shell needs it: bare when safe, else single-quoted. */
export const shellWord = (s: string) => (/^[\w./+@:=,-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** `qemu-img ARGS…`, each argument quoted as needed. */
export const qemuCommand = (...args: string[]) => ['qemu-img', ...args.map(shellWord)].join(' ');

/** The same command asking for JSON: `--output=json` right after the subcommand, where qemu-img's documentation puts it. */
export const jsonCommand = (command: string) => command.replace(/^(qemu-img \S+)/, '$1 --output=json');
