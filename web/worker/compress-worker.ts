/** One compression worker of the pool (compress-pool.ts): packs each unit it is sent and sends it back by id. */
import { compressUnit } from './compress-codec.ts';
import type { Codec } from '../../engine/writer.ts';

export interface CompressJob {
  id: number;
  data: Uint8Array;
  codec: Codec;
}

self.onmessage = ({ data: job }: MessageEvent<CompressJob>) => {
  const out = compressUnit(job.data, job.codec);
  postMessage({ id: job.id, out }, { transfer: [out.buffer] });
};
