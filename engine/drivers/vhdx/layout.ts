/**
 * VHDX on-disk constants, from Microsoft's [MS-VHDX] "Virtual Hard Disk v2
 * (VHDX) File Format". Section numbers in the comments refer to it. Every
 * integer is little-endian; GUIDs are stored in the mixed-endian Microsoft
 * layout and written here in their usual text form.
 */

const KiB = 1024;
const MiB = 1024 * KiB;

/** 2.1 "File Type Identifier": the 8 bytes 'vhdxfile' at offset 0. */
export const FILE_SIGNATURE = 'vhdxfile';
/** 2.1: the header section (identifier, two headers, two region tables) fills the first MiB. */
export const HEADER_SECTION_SIZE = 1 * MiB;

/** 2.2.2 "Headers": two 4 KiB headers at 64 KiB and 128 KiB. */
export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const HEADER_SIZE = 4 * KiB;
/** 2.2.2: 'head'. */
export const HEADER_SIGNATURE = 0x64616568;
/** 2.2.2: the only header version defined. */
export const HEADER_VERSION = 1;
/** 2.2.2: the only log version defined. */
export const LOG_VERSION = 0;
/** 2.2.2 field offsets. */
export const H = {
  signature: 0,
  checksum: 4,
  sequenceNumber: 8,
  fileWriteGuid: 16,
  dataWriteGuid: 32,
  logGuid: 48,
  logVersion: 64,
  version: 66,
  logLength: 68,
  logOffset: 72,
  /** Where the defined fields end: two headers with the same sequence number must agree up to here. */
  end: 80,
} as const;
/** 2.2.2: LogOffset and LogLength are multiples of 1 MiB; the log lies after the header section. */
export const LOG_ALIGNMENT = 1 * MiB;

/** 2.2.3 "Region Table": two 64 KiB copies, at 192 KiB and 256 KiB. */
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;
export const REGION_TABLE_SIZE = 64 * KiB;
/** 2.2.3.1: 'regi'. */
export const REGION_TABLE_SIGNATURE = 0x69676572;
/** 2.2.3.1: EntryCount is at most 2047. */
export const MAX_REGION_ENTRIES = 2047;
/** 2.2.3.1 header and 2.2.3.2 entry field offsets. */
export const RT = {
  signature: 0,
  checksum: 4,
  entryCount: 8,
  entries: 16,
  entrySize: 32,
  guid: 0,
  fileOffset: 16,
  length: 24,
  flags: 28,
} as const;
/** 2.2.3.2: the Required bit. */
export const REGION_REQUIRED = 1;
/** 2.2.3.2: known regions. */
export const BAT_REGION_GUID = '2dc27766-f623-4200-9d64-115e9bfd4a08';
export const METADATA_REGION_GUID = '8b7ca206-4790-4b9a-b8fe-575f050f886e';

/** 2.6.1 "Metadata Table": a 64 KiB table at the start of the metadata region. */
export const METADATA_TABLE_SIZE = 64 * KiB;
/** 2.6.1.1: 'metadata'. */
export const METADATA_SIGNATURE = 'metadata';
/** 2.6.1.1: EntryCount is at most 2047. */
export const MAX_METADATA_ENTRIES = 2047;
/** 2.6.1.1 header and 2.6.1.2 entry field offsets. */
export const MT = {
  signature: 0,
  entryCount: 10,
  entries: 32,
  entrySize: 32,
  itemId: 0,
  offset: 16,
  length: 20,
  flags: 24,
} as const;
/** 2.6.1.2: IsUser, IsVirtualDisk, IsRequired. */
export const METADATA_IS_REQUIRED = 1 << 2;
/** 2.6.1.2: an item is at most 1 MiB long. */
export const MAX_METADATA_ITEM = 1 * MiB;

/** 2.6.2 "Known Metadata Items". */
export const FILE_PARAMETERS_GUID = 'caa16737-fa36-4d43-b3b6-33f0aa44e76b';
export const VIRTUAL_DISK_SIZE_GUID = '2fa54224-cd1b-4876-b211-5dbed83bf4b8';
export const PAGE83_DATA_GUID = 'beca12ab-b2e6-4523-93ef-c309e000c746';
export const LOGICAL_SECTOR_SIZE_GUID = '8141bf1d-a96f-4709-ba47-f233a8faab5f';
export const PHYSICAL_SECTOR_SIZE_GUID = 'cda348c7-445d-4471-9cc9-e9885251c556';
export const PARENT_LOCATOR_GUID = 'a8d35f2d-b30b-454d-abf7-d3d84834ab0c';

/** 2.6.2.1 "File Parameters": BlockSize (u32), then the flags word. */
export const FILE_PARAMETERS_SIZE = 8;
export const LEAVE_BLOCKS_ALLOCATED = 1 << 0;
export const HAS_PARENT = 1 << 1;
/** 2.6.2.1: BlockSize is a power of two from 1 MiB to 256 MiB. */
export const MIN_BLOCK_SIZE = 1 * MiB;
export const MAX_BLOCK_SIZE = 256 * MiB;
/** 2.6.2.2 "Virtual Disk Size": at most 64 TiB. */
export const MAX_VIRTUAL_DISK_SIZE = 64 * 1024 * 1024 * MiB;
/** 2.6.2.3 "Page 83 Data": a GUID. */
export const PAGE83_DATA_SIZE = 16;
/** 2.6.2.4 / 2.6.2.5: logical and physical sector sizes are 512 or 4096. */
export const SECTOR_SIZES = [512, 4096] as const;

/** 2.6.2.6 "Parent Locator": header, then key/value entries. */
export const PL = {
  locatorType: 0,
  keyValueCount: 18,
  entries: 20,
  entrySize: 12,
  keyOffset: 0,
  valueOffset: 4,
  keyLength: 8,
  valueLength: 10,
} as const;
/** 2.6.2.6.1: the locator type of a VHDX parent. */
export const VHDX_PARENT_LOCATOR_TYPE = 'b04aefb7-d19e-4a81-b789-25b8e9445913';
/** 2.6.2.6.1: where the parent may be found, in the order tried. */
export const PARENT_PATH_KEYS = ['relative_path', 'absolute_win32_path', 'volume_path'] as const;

/** 2.5 "BAT": 64-bit entries; State in bits 0-2, FileOffsetMB in bits 20-63. */
export const BAT_ENTRY_SIZE = 8;
export const BAT_STATE_MASK = 0x7;
export const BAT_OFFSET_SHIFT = 20;
/** 2.5.1.1 "Payload BAT Entry States". */
export const PAYLOAD_BLOCK_NOT_PRESENT = 0;
export const PAYLOAD_BLOCK_UNDEFINED = 1;
export const PAYLOAD_BLOCK_ZERO = 2;
export const PAYLOAD_BLOCK_UNMAPPED = 3;
/** Not in the 1.0 spec: UNMAPPED's value in the 0.95 draft, still read as unmapped (qemu does too). */
export const PAYLOAD_BLOCK_UNMAPPED_V095 = 5;
export const PAYLOAD_BLOCK_FULLY_PRESENT = 6;
export const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;
/** 2.5.1.2 "Sector Bitmap BAT Entry States". */
export const SB_BLOCK_PRESENT = 6;
/** 2.5: a sector bitmap block is 1 MiB and covers 2^23 logical sectors (one chunk). */
export const SECTOR_BITMAP_BLOCK_SIZE = 1 * MiB;
export const SECTORS_PER_CHUNK = 2 ** 23;

/** 2.3 "Log": a circular buffer of 4 KiB sectors. */
export const LOG_SECTOR = 4 * KiB;
/** 2.3.1.1 "Entry Header": 'loge'. */
export const LOG_ENTRY_SIGNATURE = 0x65676f6c;
export const LE = {
  signature: 0,
  checksum: 4,
  entryLength: 8,
  tail: 12,
  sequenceNumber: 16,
  descriptorCount: 24,
  logGuid: 32,
  flushedFileOffset: 48,
  lastFileOffset: 56,
  size: 64,
} as const;
/** 2.3.1.2 "Log Descriptor": 32 bytes; the entry header takes the room of two in the first sector. */
export const DESCRIPTOR_SIZE = 32;
export const DESCRIPTORS_PER_SECTOR = LOG_SECTOR / DESCRIPTOR_SIZE;
/** 2.3.1.3 "Zero Descriptor": 'zero'. */
export const ZERO_DESCRIPTOR_SIGNATURE = 0x6f72657a;
/** 2.3.1.4 "Data Descriptor": 'desc'. */
export const DATA_DESCRIPTOR_SIGNATURE = 0x63736564;
export const D = {
  signature: 0,
  trailingBytes: 4,
  leadingBytes: 8,
  zeroLength: 8,
  fileOffset: 16,
  sequenceNumber: 24,
} as const;
/** 2.3.1.5 "Data Sector": 'data', then the sequence number split around 4084 bytes of data. */
export const DATA_SECTOR_SIGNATURE = 0x61746164;
export const DS = {
  signature: 0,
  sequenceHigh: 4,
  data: 8,
  sequenceLow: 4092,
} as const;
/** 2.3.1.4: a data sector's first 8 and last 4 bytes live in its descriptor. */
export const LEADING_BYTES = 8;
export const TRAILING_BYTES = 4;
