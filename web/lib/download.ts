/** Handing bytes to the browser's downloads: an object URL clicked as a link, revoked once the download surely has its own reference. */
export function download(blob: Blob, name: string, keepMs = 30_000): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.hidden = true;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), keepMs);
}
