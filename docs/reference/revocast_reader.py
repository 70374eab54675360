#!/usr/bin/env python3
"""A revocast replica in Python, written from docs/FORMAT.md alone.

Standard library only: XXH3-64 is implemented here. It reads envelopes (snapshot,
delta, heartbeat), rebuilds the filter, applies deltas and answers checks exactly as
the Rust filter does, bit for bit. It does not verify Ed25519 signatures (the
standard library has no Ed25519): a real replica must, before it trusts any byte.

    python3 revocast_reader.py SNAPSHOT [DELTA ...] < checks.tsv > answers.txt

Each line of checks.tsv is `jti<TAB>exp[<TAB>sub<TAB>iat<TAB>sid]` (an empty field
is "absent"); each answer line is one of clear, filter_hit, subject_cutoff,
session_cutoff, global_cutoff, the names of FORMAT.md's "Checking a token".

    python3 revocast_reader.py --selftest

checks the worked examples of FORMAT.md.
"""

import struct
import sys

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1

# ---------------------------------------------------------------------------
# XXH3-64 with a seed (FORMAT.md, "The hash")
# ---------------------------------------------------------------------------

P32_1, P32_2, P32_3 = 0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D
P64_1, P64_2, P64_3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
P64_4, P64_5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
PRIME_MX1, PRIME_MX2 = 0x165667919E3779F9, 0x9FB21C651E98DF25

SECRET = bytes.fromhex(
    "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
    "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
    "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
    "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
    "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
    "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e"
)


def r64(b, i):
    return struct.unpack_from("<Q", b, i)[0]


def r32(b, i):
    return struct.unpack_from("<I", b, i)[0]


def rotl64(x, r):
    return ((x << r) | (x >> (64 - r))) & MASK64


def swap64(x):
    return int.from_bytes(x.to_bytes(8, "little"), "big")


def swap32(x):
    return int.from_bytes(x.to_bytes(4, "little"), "big")


def mul128_fold64(a, b):
    p = a * b
    return (p ^ (p >> 64)) & MASK64


def xxh64_avalanche(h):
    h ^= h >> 33
    h = (h * P64_2) & MASK64
    h ^= h >> 29
    h = (h * P64_3) & MASK64
    return h ^ (h >> 32)


def xxh3_avalanche(h):
    h ^= h >> 37
    h = (h * PRIME_MX1) & MASK64
    return h ^ (h >> 32)


def rrmxmx(h, length):
    h ^= rotl64(h, 49) ^ rotl64(h, 24)
    h = (h * PRIME_MX2) & MASK64
    h ^= ((h >> 35) + length) & MASK64
    h = (h * PRIME_MX2) & MASK64
    return h ^ (h >> 28)


def mix16(data, i, secret, s, seed):
    lo = r64(data, i) ^ ((r64(secret, s) + seed) & MASK64)
    hi = r64(data, i + 8) ^ ((r64(secret, s + 8) - seed) & MASK64)
    return mul128_fold64(lo, hi)


def _len_0to16(data, seed):
    n = len(data)
    if n > 8:
        flip1 = ((r64(SECRET, 24) ^ r64(SECRET, 32)) + seed) & MASK64
        flip2 = ((r64(SECRET, 40) ^ r64(SECRET, 48)) - seed) & MASK64
        lo = r64(data, 0) ^ flip1
        hi = r64(data, n - 8) ^ flip2
        acc = (n + swap64(lo) + hi + mul128_fold64(lo, hi)) & MASK64
        return xxh3_avalanche(acc)
    if n >= 4:
        seed ^= swap32(seed & MASK32) << 32
        flip = ((r64(SECRET, 8) ^ r64(SECRET, 16)) - seed) & MASK64
        value = (r32(data, n - 4) + (r32(data, 0) << 32)) & MASK64
        return rrmxmx(value ^ flip, n)
    if n > 0:
        combined = (data[0] << 16) | (data[n >> 1] << 24) | data[n - 1] | (n << 8)
        flip = ((r32(SECRET, 0) ^ r32(SECRET, 4)) + seed) & MASK64
        return xxh64_avalanche(combined ^ flip)
    return xxh64_avalanche(seed ^ r64(SECRET, 56) ^ r64(SECRET, 64))


def _len_17to128(data, seed):
    n = len(data)
    acc = (n * P64_1) & MASK64
    if n > 32:
        if n > 64:
            if n > 96:
                acc += mix16(data, 48, SECRET, 96, seed)
                acc += mix16(data, n - 64, SECRET, 112, seed)
            acc += mix16(data, 32, SECRET, 64, seed)
            acc += mix16(data, n - 48, SECRET, 80, seed)
        acc += mix16(data, 16, SECRET, 32, seed)
        acc += mix16(data, n - 32, SECRET, 48, seed)
    acc += mix16(data, 0, SECRET, 0, seed)
    acc += mix16(data, n - 16, SECRET, 16, seed)
    return xxh3_avalanche(acc & MASK64)


def _len_129to240(data, seed):
    n = len(data)
    acc = (n * P64_1) & MASK64
    for i in range(8):
        acc += mix16(data, 16 * i, SECRET, 16 * i, seed)
    acc = xxh3_avalanche(acc & MASK64)
    for i in range(8, n // 16):
        acc += mix16(data, 16 * i, SECRET, 16 * (i - 8) + 3, seed)
    acc += mix16(data, n - 16, SECRET, 136 - 17, seed)
    return xxh3_avalanche(acc & MASK64)


def _accumulate_512(acc, data, i, secret, s):
    for lane in range(8):
        value = r64(data, i + 8 * lane)
        key = value ^ r64(secret, s + 8 * lane)
        acc[lane ^ 1] = (acc[lane ^ 1] + value) & MASK64
        acc[lane] = (acc[lane] + (key & MASK32) * (key >> 32)) & MASK64


def _scramble(acc, secret, s):
    for lane in range(8):
        a = acc[lane]
        a ^= a >> 47
        a ^= r64(secret, s + 8 * lane)
        acc[lane] = (a * P32_1) & MASK64


def _len_long(data, seed):
    if seed == 0:
        secret = SECRET
    else:
        parts = []
        for i in range(len(SECRET) // 16):
            parts.append(struct.pack("<Q", (r64(SECRET, 16 * i) + seed) & MASK64))
            parts.append(struct.pack("<Q", (r64(SECRET, 16 * i + 8) - seed) & MASK64))
        secret = b"".join(parts)
    n = len(data)
    acc = [P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1]
    stripes_per_block = (len(secret) - 64) // 8
    block = 64 * stripes_per_block
    blocks = (n - 1) // block
    for b in range(blocks):
        for s in range(stripes_per_block):
            _accumulate_512(acc, data, b * block + 64 * s, secret, 8 * s)
        _scramble(acc, secret, len(secret) - 64)
    stripes = ((n - 1) - block * blocks) // 64
    for s in range(stripes):
        _accumulate_512(acc, data, blocks * block + 64 * s, secret, 8 * s)
    _accumulate_512(acc, data, n - 64, secret, len(secret) - 64 - 7)
    result = (n * P64_1) & MASK64
    for i in range(4):
        result += mul128_fold64(
            acc[2 * i] ^ r64(secret, 11 + 16 * i), acc[2 * i + 1] ^ r64(secret, 11 + 16 * i + 8)
        )
    return xxh3_avalanche(result & MASK64)


def xxh3_64(data, seed=0):
    """XXH3_64bits_withSeed(data, seed)."""
    n = len(data)
    if n <= 16:
        return _len_0to16(data, seed)
    if n <= 128:
        return _len_17to128(data, seed)
    if n <= 240:
        return _len_129to240(data, seed)
    return _len_long(data, seed)


# ---------------------------------------------------------------------------
# Bit positions (FORMAT.md, "Where a key's bits are"): `h` is a key's hash in a
# bucket, XXH3-64 of the jti XOR the bucket's seed.
# ---------------------------------------------------------------------------

SALT = [
    0x910A2DED, 0x975835DF, 0x1D0B14E5, 0x6E73E373,
    0x63033B0D, 0xBD64A5D9, 0x63CBE1E5, 0x9E5651B1,
    0xAEAF52FF, 0x088712BF, 0x50F5647D, 0x943FF9FD,
    0xC4CA37B7, 0x6AA9D615, 0x875B9307, 0x5DE186DD,
]


def block_index(h, blocks):
    return ((h >> 32) * blocks) >> 32


def bit_positions(h, k):
    """The k bit numbers (0..511) a key sets in its block."""
    x = h & MASK32
    return [64 * (i % 8) + (((x * SALT[i]) & MASK32) >> 26) for i in range(k)]


# ---------------------------------------------------------------------------
# Bytes: the envelope and bincode-encoded bodies (FORMAT.md, "Encoding")
# ---------------------------------------------------------------------------

FORMAT_VERSION = 5
KINDS = {1: "snapshot", 2: "delta", 3: "heartbeat", 4: "confirm request", 5: "confirm response"}


class FormatError(Exception):
    pass


class Body:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise FormatError("body is truncated")
        out = self.data[self.at:self.at + n]
        self.at += n
        return out

    def u8(self):
        return self.take(1)[0]

    def varint(self):
        first = self.u8()
        if first < 251:
            return first
        width = {251: 2, 252: 4, 253: 8, 254: 16}.get(first)
        if width is None:
            raise FormatError("invalid integer tag %d" % first)
        return int.from_bytes(self.take(width), "little")

    def f64(self):
        return struct.unpack("<d", self.take(8))[0]

    def boolean(self):
        b = self.u8()
        if b > 1:
            raise FormatError("invalid bool")
        return b == 1

    def string(self):
        return self.take(self.varint()).decode("utf-8")

    def option(self, read):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return read()
        raise FormatError("invalid option tag %d" % tag)

    def seq(self, read):
        return [read() for _ in range(self.varint())]

    def end(self):
        if self.at != len(self.data):
            raise FormatError("%d bytes left over after the body" % (len(self.data) - self.at))


def open_envelope(data):
    """(kind, namespace, body). The signature is NOT verified here."""
    if data[:4] != b"RVCB":
        raise FormatError("bad magic")
    if len(data) < 7:
        raise FormatError("truncated")
    if data[4] != FORMAT_VERSION:
        raise FormatError("unsupported format version %d (this reader reads %d)" % (data[4], FORMAT_VERSION))
    kind = KINDS.get(data[5])
    if kind is None:
        raise FormatError("unknown kind %d" % data[5])
    ns_len = data[6]
    namespace = data[7:7 + ns_len].decode("ascii")
    at = 7 + ns_len
    (body_len,) = struct.unpack_from("<I", data, at)
    body = data[at + 4:at + 4 + body_len]
    signed = kind != "confirm request"
    if len(body) != body_len or len(data) != at + 4 + body_len + (64 if signed else 0):
        raise FormatError("truncated or trailing bytes")
    return kind, namespace, body


def read_params(b):
    return {
        "bucket_width": b.varint(),
        "target_fpr": b.f64(),
        "initial_capacity": b.varint(),
        "max_token_lifetime": b.varint(),
        "leeway": b.varint(),
    }


def read_layer_state(b):
    layer = {"capacity": b.varint(), "count": b.varint(), "hashes": b.u8()}
    layer["bitmap"] = bytearray(b.take(b.varint()))
    return layer


def read_bucket_state(b):
    return {"index": b.varint(), "seed": b.varint(), "layers": b.seq(lambda: read_layer_state(b))}


def read_snapshot(body):
    b = Body(body)
    taken_at_ms = b.varint()
    log_seq = b.varint()
    state = {
        "params": read_params(b),
        "epoch": b.varint(),
        "version": b.varint(),
        "buckets": b.seq(lambda: read_bucket_state(b)),
        "subject_cutoffs": b.seq(lambda: (b.string(), b.varint())),
        "session_cutoffs": b.seq(lambda: (b.string(), b.varint())),
        "global_cutoff": b.option(b.varint),
        "key_chain": b.seq(lambda: read_rollover(b)),
    }
    b.end()
    state["log_seq"] = log_seq
    return taken_at_ms, state


def read_rollover(b):
    """A signed key rollover (FORMAT.md, "Key rollovers"). This reader does not check
    signatures (the standard library has no Ed25519): it keeps the chain as data."""
    return {"epoch": b.varint(), "index": b.varint(), "version": b.varint(), "from": b.take(32).hex(),
            "to": b.take(32).hex(),
            "at_ms": b.varint(), "overlap_ms": b.varint(), "signature": b.take(64).hex()}


def read_change(b):
    variant = b.varint()
    if variant == 0:
        return ("open_layer", {"bucket": b.varint(), "seed": b.varint(), "capacity": b.varint(),
                               "blocks": b.varint(), "hashes": b.u8()})
    if variant == 1:
        return ("add", {"jti": b.string(), "exp": b.varint(), "sub": b.option(b.string),
                        "reason": b.option(b.string)})
    if variant == 2:
        return ("subject_cutoff", {"sub": b.string(), "not_before": b.varint()})
    if variant == 3:
        return ("global_cutoff", {"not_before": b.varint()})
    if variant == 4:
        return ("expire", {"now": b.varint()})
    if variant == 5:
        return ("session_cutoff", {"sid": b.string(), "not_before": b.varint()})
    if variant == 6:
        return ("rollover", read_rollover(b))
    raise FormatError("unknown change %d" % variant)


def read_delta(body):
    b = Body(body)
    delta = {"epoch": b.varint(), "version": b.varint(), "committed_at_ms": b.varint(),
             "changes": b.seq(lambda: read_change(b))}
    b.end()
    return delta


def read_heartbeat(body):
    b = Body(body)
    heartbeat = {"epoch": b.varint(), "version": b.varint(), "beat": b.varint(), "time_ms": b.varint(),
                 "digest": b.take(32).hex()}
    b.end()
    return heartbeat


# ---------------------------------------------------------------------------
# The filter (FORMAT.md, "The filter")
# ---------------------------------------------------------------------------


class Layer:
    def __init__(self, capacity, count, hashes, bitmap):
        if not 1 <= hashes <= 16 or len(bitmap) == 0 or len(bitmap) % 64:
            raise FormatError("invalid layer")
        self.capacity, self.count, self.hashes, self.bitmap = capacity, count, hashes, bitmap

    def blocks(self):
        return len(self.bitmap) // 64

    def bits(self, h):
        base = 64 * block_index(h, self.blocks())
        return [(base + p // 8, p % 8) for p in bit_positions(h, self.hashes)]

    def contains(self, h):
        return all(self.bitmap[byte] >> bit & 1 for byte, bit in self.bits(h))

    def insert(self, h):
        for byte, bit in self.bits(h):
            self.bitmap[byte] |= 1 << bit
        self.count += 1


class Filter:
    def __init__(self, state):
        self.params = state["params"]
        self.epoch = state["epoch"]
        self.version = state["version"]
        self.buckets = {}
        for bucket in state["buckets"]:
            layers = [Layer(l["capacity"], l["count"], l["hashes"], l["bitmap"]) for l in bucket["layers"]]
            self.buckets[bucket["index"]] = (bucket["seed"], layers)
        self.subject_cutoffs = dict(state["subject_cutoffs"])
        self.session_cutoffs = dict(state["session_cutoffs"])
        self.global_cutoff = state["global_cutoff"]
        self.key_chain = list(state["key_chain"])

    def bucket_of(self, exp):
        return exp // self.params["bucket_width"]

    def contains(self, jti, exp):
        key = xxh3_64(jti.encode("utf-8"))
        indexes = [self.bucket_of(exp)] if exp is not None else list(self.buckets)
        for index in indexes:
            if index in self.buckets:
                seed, layers = self.buckets[index]
                if any(layer.contains(key ^ seed) for layer in layers):
                    return True
        return False

    def lookup(self, jti, exp, sub=None, iat=None, sid=None):
        p = self.params
        if iat is not None and exp is not None and exp - iat > p["max_token_lifetime"] + p["leeway"]:
            return "global_cutoff"
        if iat is None:
            iat = max(exp - self.params["max_token_lifetime"], 0) if exp is not None else 0
        if self.global_cutoff is not None and iat < self.global_cutoff:
            return "global_cutoff"
        if sub is not None and sub in self.subject_cutoffs and iat < self.subject_cutoffs[sub]:
            return "subject_cutoff"
        if sid is not None and sid in self.session_cutoffs and iat < self.session_cutoffs[sid]:
            return "session_cutoff"
        return "filter_hit" if self.contains(jti, exp) else "clear"

    def apply(self, delta):
        """Applies a delta; this reader trusts (does not re-validate) what it applies."""
        if delta["epoch"] != self.epoch:
            raise FormatError("delta of epoch %016x, filter of %016x" % (delta["epoch"], self.epoch))
        if delta["version"] != self.version + 1:
            raise FormatError("delta %d does not follow version %d" % (delta["version"], self.version))
        for name, c in delta["changes"]:
            if name == "open_layer":
                seed, layers = self.buckets.setdefault(c["bucket"], (c["seed"], []))
                if seed != c["seed"]:
                    raise FormatError("layer seed differs from its bucket's")
                layers.append(Layer(c["capacity"], 0, c["hashes"], bytearray(64 * c["blocks"])))
            elif name == "add":
                seed, layers = self.buckets[self.bucket_of(c["exp"])]
                layers[-1].insert(xxh3_64(c["jti"].encode("utf-8")) ^ seed)
            elif name == "subject_cutoff":
                self.subject_cutoffs[c["sub"]] = max(self.subject_cutoffs.get(c["sub"], 0), c["not_before"])
            elif name == "session_cutoff":
                self.session_cutoffs[c["sid"]] = max(self.session_cutoffs.get(c["sid"], 0), c["not_before"])
            elif name == "global_cutoff":
                self.global_cutoff = max(self.global_cutoff or 0, c["not_before"])
            elif name == "expire":
                self.expire(c["now"])
            elif name == "rollover":
                self.key_chain.append(c)
        self.version = delta["version"]

    def expire(self, now):
        p = self.params
        first_live = max(now - p["leeway"], 0) // p["bucket_width"]
        self.buckets = {i: b for i, b in self.buckets.items() if i >= first_live}

        def live(not_before):
            return not_before + p["max_token_lifetime"] + p["leeway"] >= now

        self.subject_cutoffs = {s: t for s, t in self.subject_cutoffs.items() if live(t)}
        self.session_cutoffs = {s: t for s, t in self.session_cutoffs.items() if live(t)}
        if self.global_cutoff is not None and not live(self.global_cutoff):
            self.global_cutoff = None


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def selftest():
    """The worked examples of FORMAT.md."""
    assert xxh3_64(b"") == 0x2D06800538D394C2
    assert xxh3_64(b"abc") == 0x78AF5F94892F3950
    key = xxh3_64(b"8f14e45f-ceea-467f-a0e7-000000000042")
    assert key == 0x78AF6389F2AA34A1, hex(key)
    h = key ^ 0x0123456789ABCDEF
    assert h == 0x798C26EE7B01F94E
    assert block_index(h, 1000) == 474
    assert bit_positions(h, 8) == [9, 81, 175, 224, 306, 352, 423, 484]
    assert bit_positions(h, 10) == [9, 81, 175, 224, 306, 352, 423, 484, 38, 116]
    print("selftest: ok")


def main(argv):
    if argv[1:] == ["--selftest"]:
        selftest()
        return 0
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[1], "rb") as f:
        kind, _, body = open_envelope(f.read())
    if kind != "snapshot":
        raise FormatError("%s is a %s, not a snapshot" % (argv[1], kind))
    _, state = read_snapshot(body)
    flt = Filter(state)
    for path in argv[2:]:
        with open(path, "rb") as f:
            kind, _, body = open_envelope(f.read())
        if kind == "delta":
            flt.apply(read_delta(body))
        elif kind == "heartbeat":
            heartbeat = read_heartbeat(body)
            if heartbeat["epoch"] != flt.epoch:
                raise FormatError("heartbeat of epoch %016x, filter of %016x" % (heartbeat["epoch"], flt.epoch))
            if heartbeat["version"] != flt.version:
                raise FormatError("heartbeat at version %d, filter at %d" % (heartbeat["version"], flt.version))
        else:
            raise FormatError("%s is a %s" % (path, kind))
    out = []
    for line in sys.stdin:
        fields = line.rstrip("\n").split("\t")
        fields += [""] * (5 - len(fields))
        jti, exp, sub, iat, sid = fields[:5]
        out.append(flt.lookup(jti, int(exp) if exp else None, sub or None, int(iat) if iat else None,
                              sid or None))
    sys.stdout.write("\n".join(out) + ("\n" if out else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
