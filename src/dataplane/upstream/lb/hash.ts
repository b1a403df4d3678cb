/**
 * The 64-bit hashes Envoy's load balancers use (xxHash64 for request hashes, ring points and Maglev
 * permutations; libstdc++'s MurmurHash2 for `hash_function: MURMUR_HASH_2` rings), on plain numbers as two
 * unsigned 32-bit halves so that hashing allocates nothing: no BigInt, no Buffer.
 *
 * Strings are hashed one byte per character, which is how Node's HTTP parser hands over header values, paths
 * and cookies (latin1): the bytes hashed are the bytes that arrived, as in Envoy.
 */

/** A 64-bit value as unsigned 32-bit halves; the hash of a request, or a ring position. */
export class Hash64 {
  hi = 0;
  lo = 0;

  set(hi: number, lo: number): this {
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
    return this;
  }

  /** Envoy's combination of policy hashes: `rotl(previous, 1) ^ next`. */
  combine(hi: number, lo: number): void {
    const rotHi = ((this.hi << 1) | (this.lo >>> 31)) >>> 0;
    const rotLo = ((this.lo << 1) | (this.hi >>> 31)) >>> 0;
    this.hi = (rotHi ^ hi) >>> 0;
    this.lo = (rotLo ^ lo) >>> 0;
  }

  /** `value % m` for m below 2^26 (percentages, Maglev table sizes), where every product stays exact in a double. */
  mod(m: number): number {
    return ((this.hi % m) * (TWO_32 % m) + (this.lo % m)) % m;
  }

  /** 16 lower-case hex digits, as Envoy's `Hex::uint64ToHex`. */
  toHex(): string {
    return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0');
  }
}

const TWO_32 = 0x1_0000_0000;

// Result registers of the 64-bit helpers below: module state instead of returned pairs, so nothing allocates.
let rHi = 0;
let rLo = 0;

function add(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const lo = aLo + bLo;
  rLo = lo >>> 0;
  rHi = (aHi + bHi + (lo >= TWO_32 ? 1 : 0)) >>> 0;
}

/** The low 64 bits of a × b, by 16-bit limbs so that every partial product is exact. */
function mul(aHi: number, aLo: number, bHi: number, bLo: number): void {
  const a48 = aHi >>> 16;
  const a32 = aHi & 0xffff;
  const a16 = aLo >>> 16;
  const a00 = aLo & 0xffff;
  const b48 = bHi >>> 16;
  const b32 = bHi & 0xffff;
  const b16 = bLo >>> 16;
  const b00 = bLo & 0xffff;
  let c00 = a00 * b00;
  let c16 = (c00 >>> 16) + a16 * b00;
  c00 &= 0xffff;
  let c32 = c16 >>> 16;
  c16 = (c16 & 0xffff) + a00 * b16;
  c32 += c16 >>> 16;
  c16 &= 0xffff;
  c32 += a32 * b00;
  let c48 = c32 >>> 16;
  c32 = (c32 & 0xffff) + a16 * b16;
  c48 += c32 >>> 16;
  c32 = (c32 & 0xffff) + a00 * b32;
  c48 += c32 >>> 16;
  c32 &= 0xffff;
  c48 = (c48 + a48 * b00 + a32 * b16 + a16 * b32 + a00 * b48) & 0xffff;
  rHi = ((c48 << 16) | c32) >>> 0;
  rLo = ((c16 << 16) | c00) >>> 0;
}

/** Rotate left by n, 0 < n < 32. */
function rotl(hi: number, lo: number, n: number): void {
  rHi = ((hi << n) | (lo >>> (32 - n))) >>> 0;
  rLo = ((lo << n) | (hi >>> (32 - n))) >>> 0;
}

/** `v ^ (v >> n)`, 32 <= n < 64. */
function xorShiftHigh(hi: number, lo: number, n: number): void {
  rHi = hi;
  rLo = (lo ^ (hi >>> (n - 32))) >>> 0;
}

/** `v ^ (v >> n)`, 0 < n < 32. */
function xorShiftLow(hi: number, lo: number, n: number): void {
  rHi = (hi ^ (hi >>> n)) >>> 0;
  rLo = (lo ^ ((lo >>> n) | (hi << (32 - n)))) >>> 0;
}

function byteAt(s: string, i: number): number {
  return s.charCodeAt(i) & 0xff;
}

function read32(s: string, i: number): number {
  return (byteAt(s, i) | (byteAt(s, i + 1) << 8) | (byteAt(s, i + 2) << 16) | (byteAt(s, i + 3) << 24)) >>> 0;
}

// xxHash64 primes.
const P1_HI = 0x9e3779b1;
const P1_LO = 0x85ebca87;
const P2_HI = 0xc2b2ae3d;
const P2_LO = 0x27d4eb4f;
const P3_HI = 0x165667b1;
const P3_LO = 0x9e3779f9;
const P4_HI = 0x85ebca77;
const P4_LO = 0xc2b2ae63;
const P5_HI = 0x27d4eb2f;
const P5_LO = 0x165667c5;
/** 2^64 - P1, for the fourth accumulator's `seed - P1`. */
const NEG_P1_HI = 0x61c8864e;
const NEG_P1_LO = 0x7a143579;

/** xxHash64's round: `rotl(acc + input * P2, 31) * P1`. */
function round(accHi: number, accLo: number, inHi: number, inLo: number): void {
  mul(inHi, inLo, P2_HI, P2_LO);
  add(accHi, accLo, rHi, rLo);
  rotl(rHi, rLo, 31);
  mul(rHi, rLo, P1_HI, P1_LO);
}

/** xxHash64's merge of an accumulator into the hash: `(h ^ round(0, v)) * P1 + P4`. */
function mergeRound(hHi: number, hLo: number, vHi: number, vLo: number): void {
  round(0, 0, vHi, vLo);
  mul((hHi ^ rHi) >>> 0, (hLo ^ rLo) >>> 0, P1_HI, P1_LO);
  add(rHi, rLo, P4_HI, P4_LO);
}

/**
 * xxHash64 (XXH64) of `s` from `start` to `end`, with a 32-bit seed (Envoy uses 0, and 1 for Maglev skips),
 * written into `out`. Hashing a slice in place is what lets a cookie or query parameter be hashed without
 * cutting it out of its header first.
 */
export function xxHash64(s: string, out: Hash64, start = 0, end = s.length, seed = 0): Hash64 {
  const length = end - start;
  let p = start;
  let hHi: number;
  let hLo: number;
  if (length >= 32) {
    add(0, seed, P1_HI, P1_LO);
    add(rHi, rLo, P2_HI, P2_LO);
    let v1Hi = rHi;
    let v1Lo = rLo;
    add(0, seed, P2_HI, P2_LO);
    let v2Hi = rHi;
    let v2Lo = rLo;
    let v3Hi = 0;
    let v3Lo = seed >>> 0;
    add(0, seed, NEG_P1_HI, NEG_P1_LO);
    let v4Hi = rHi;
    let v4Lo = rLo;
    const limit = end - 32;
    do {
      round(v1Hi, v1Lo, read32(s, p + 4), read32(s, p));
      v1Hi = rHi;
      v1Lo = rLo;
      round(v2Hi, v2Lo, read32(s, p + 12), read32(s, p + 8));
      v2Hi = rHi;
      v2Lo = rLo;
      round(v3Hi, v3Lo, read32(s, p + 20), read32(s, p + 16));
      v3Hi = rHi;
      v3Lo = rLo;
      round(v4Hi, v4Lo, read32(s, p + 28), read32(s, p + 24));
      v4Hi = rHi;
      v4Lo = rLo;
      p += 32;
    } while (p <= limit);
    rotl(v1Hi, v1Lo, 1);
    hHi = rHi;
    hLo = rLo;
    rotl(v2Hi, v2Lo, 7);
    add(hHi, hLo, rHi, rLo);
    hHi = rHi;
    hLo = rLo;
    rotl(v3Hi, v3Lo, 12);
    add(hHi, hLo, rHi, rLo);
    hHi = rHi;
    hLo = rLo;
    rotl(v4Hi, v4Lo, 18);
    add(hHi, hLo, rHi, rLo);
    mergeRound(rHi, rLo, v1Hi, v1Lo);
    mergeRound(rHi, rLo, v2Hi, v2Lo);
    mergeRound(rHi, rLo, v3Hi, v3Lo);
    mergeRound(rHi, rLo, v4Hi, v4Lo);
    hHi = rHi;
    hLo = rLo;
  } else {
    add(0, seed, P5_HI, P5_LO);
    hHi = rHi;
    hLo = rLo;
  }
  add(hHi, hLo, 0, length);
  hHi = rHi;
  hLo = rLo;
  while (p + 8 <= end) {
    round(0, 0, read32(s, p + 4), read32(s, p));
    rotl((hHi ^ rHi) >>> 0, (hLo ^ rLo) >>> 0, 27);
    mul(rHi, rLo, P1_HI, P1_LO);
    add(rHi, rLo, P4_HI, P4_LO);
    hHi = rHi;
    hLo = rLo;
    p += 8;
  }
  if (p + 4 <= end) {
    mul(0, read32(s, p), P1_HI, P1_LO);
    rotl((hHi ^ rHi) >>> 0, (hLo ^ rLo) >>> 0, 23);
    mul(rHi, rLo, P2_HI, P2_LO);
    add(rHi, rLo, P3_HI, P3_LO);
    hHi = rHi;
    hLo = rLo;
    p += 4;
  }
  while (p < end) {
    mul(0, byteAt(s, p), P5_HI, P5_LO);
    rotl((hHi ^ rHi) >>> 0, (hLo ^ rLo) >>> 0, 11);
    mul(rHi, rLo, P1_HI, P1_LO);
    hHi = rHi;
    hLo = rLo;
    p++;
  }
  // Avalanche.
  xorShiftHigh(hHi, hLo, 33);
  mul(rHi, rLo, P2_HI, P2_LO);
  xorShiftLow(rHi, rLo, 29);
  mul(rHi, rLo, P3_HI, P3_LO);
  xorShiftHigh(rHi, rLo, 32);
  return out.set(rHi, rLo);
}

const MURMUR_MUL_HI = 0xc6a4a793;
const MURMUR_MUL_LO = 0x5bd1e995;
/** libstdc++'s `std::hash` seed, which Envoy passes as `MurmurHash::STD_HASH_SEED`. */
const STD_HASH_SEED = 0xc70f6907;

/** 64-bit MurmurHash2 as libstdc++'s `_Hash_bytes` (Envoy's `MurmurHash::murmurHash2`), seeded as std::hash. */
export function murmurHash2(s: string, out: Hash64): Hash64 {
  const length = s.length;
  mul(0, length, MURMUR_MUL_HI, MURMUR_MUL_LO);
  let hHi = rHi;
  let hLo = (rLo ^ STD_HASH_SEED) >>> 0;
  const aligned = length & ~7;
  for (let p = 0; p < aligned; p += 8) {
    mul(read32(s, p + 4), read32(s, p), MURMUR_MUL_HI, MURMUR_MUL_LO);
    xorShiftHigh(rHi, rLo, 47);
    mul(rHi, rLo, MURMUR_MUL_HI, MURMUR_MUL_LO);
    mul((hHi ^ rHi) >>> 0, (hLo ^ rLo) >>> 0, MURMUR_MUL_HI, MURMUR_MUL_LO);
    hHi = rHi;
    hLo = rLo;
  }
  if (length > aligned) {
    // The trailing 1-7 bytes, little-endian.
    let tailHi = 0;
    let tailLo = 0;
    for (let i = length - 1; i >= aligned; i--) {
      tailHi = ((tailHi << 8) | (tailLo >>> 24)) >>> 0;
      tailLo = ((tailLo << 8) | byteAt(s, i)) >>> 0;
    }
    mul((hHi ^ tailHi) >>> 0, (hLo ^ tailLo) >>> 0, MURMUR_MUL_HI, MURMUR_MUL_LO);
    hHi = rHi;
    hLo = rLo;
  }
  xorShiftHigh(hHi, hLo, 47);
  mul(rHi, rLo, MURMUR_MUL_HI, MURMUR_MUL_LO);
  xorShiftHigh(rHi, rLo, 47);
  return out.set(rHi, rLo);
}
