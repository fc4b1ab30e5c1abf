"""Label Studio's brush format: a mask as the RGBA image of the mask, flattened row-major and
compressed with the bit-packed run-length code of the thi.ng ``rle-pack`` JavaScript library (a
task's JSON holds the compressed bytes as a list of ints). Written by hand, so that reading and
writing it needs no Label Studio package.

The stream layout, as rle-pack's ``encode``/``decode`` and @thi.ng/bitstream write and read it
(bits most significant first; the last byte is zero-padded):

* 32 bits: number of values (height * width * 4 for a brush mask);
* 5 bits: word size - 1 (Label Studio always uses 8-bit words, so 7);
* 4 x 4 bits: the four run-length field sizes - 1 (Label Studio uses 3, 4, 8, 16);
* then chunks until all values are produced: 1 bit flag (1 = repeat, 0 = literal), 2 bits choosing
  one of the four field sizes, that many bits holding run length - 1, then ONE word for a repeat
  (written run-length times) or run-length words for a literal chunk.

(rle-pack's first release, 2017, wrote a different layout without the word-size and field-size
header; Label Studio's frontend and its Python converter both use the layout above.)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from xssr.exchange.binary import binary_mask

WORD_SIZE = 8  # bits per value; the RGBA bytes of a brush mask
RLE_SIZES = (3, 4, 8, 16)  # run-length field sizes Label Studio's frontend and converter write
_HEADER_BITS = 32 + 5 + 4 * 4
_MAX_RUN = 1 << RLE_SIZES[-1]  # 65536: a 16-bit field holds run length - 1
# A run of n + 1 values (n stored) uses the smallest field that holds n: n < 8, < 16, < 256, else 16 bits.
_CLASS_LIMITS = np.array([1 << s for s in RLE_SIZES[:-1]])
_ALPHA_THRESHOLD = 127  # the frontend antialiases brush edges; alpha above half counts as painted
_FIELDS_PER_BLOCK = 1 << 16  # bounds the encoder's temporary arrays, whatever the mask size


def encode_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a (H, W) binary mask as Label Studio brush RLE (a list of byte values 0-255).

    The encoded image is RGBA with every channel 255 on the mask and 0 elsewhere, which is how
    Label Studio's own converter (``mask2rle``) builds it, so the frontend paints it like a
    hand-drawn brush stroke. ``mask`` may be bool, {0, 1} or {0, 255}; anything else is refused
    rather than thresholded, so a probability map passed by mistake is caught.
    """
    painted = binary_mask(mask)
    height, width = painted.shape
    num = height * width * 4
    if num >= 1 << 32:
        raise ValueError(f"mask of {height}x{width} pixels is too large for Label Studio brush RLE "
                         f"(its 32-bit header counts at most {(1 << 32) - 1} values, this needs {num})")

    # Runs are found on pixels, not on RGBA values: the four channels of a pixel are equal, so
    # every RGBA run is a pixel run times four. Only repeat chunks are written: runs are at least 4
    # values long, and a repeat chunk is never longer than a literal one for those.
    flat = painted.ravel()
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size)).astype(np.int64) * 4
    values = np.where(flat[starts], 255, 0).astype(np.int64)

    # A 16-bit field holds at most 65536 repeats; longer runs become several chunks.
    pieces = (lengths + _MAX_RUN - 1) // _MAX_RUN
    chunk_values = np.repeat(values, pieces)
    chunk_lengths = np.full(int(pieces.sum()), _MAX_RUN, dtype=np.int64)
    chunk_lengths[np.cumsum(pieces) - 1] = lengths - (pieces - 1) * _MAX_RUN

    stored = chunk_lengths - 1
    size_class = np.searchsorted(_CLASS_LIMITS, stored, side="right")
    field_bits = np.asarray(RLE_SIZES, dtype=np.int64)[size_class]
    # One chunk = flag 1 | class (2 bits) | run length - 1 | value: at most 27 bits, one int64.
    chunk_codes = ((1 << (field_bits + 2 + WORD_SIZE)) | (size_class << (field_bits + WORD_SIZE))
                   | (stored << WORD_SIZE) | chunk_values)
    chunk_widths = 1 + 2 + field_bits + WORD_SIZE

    header_codes = [num, WORD_SIZE - 1, *(s - 1 for s in RLE_SIZES)]
    header_widths = [32, 5, 4, 4, 4, 4]
    codes = np.concatenate((np.asarray(header_codes, dtype=np.int64), chunk_codes))
    widths = np.concatenate((np.asarray(header_widths, dtype=np.int64), chunk_widths))
    return _pack_fields(codes, widths)


def decode_brush_rle(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """Decode Label Studio brush RLE to a (height, width) uint8 mask in {0, 1}.

    The mask is the alpha channel above 127: the frontend draws strokes with antialiased edges
    and with the label's colour (or grey) in RGB, so alpha is the one channel that means "painted".
    Any stream the rle-pack format allows is read (literal chunks, any run-length field sizes);
    bytes after the last value are ignored (Label Studio's Python converter pads with a whole
    zero byte when the bits already end on a byte boundary).

    Raises ValueError when the header's value count is not height*width*4, the word size is not
    8 bits, or the stream ends before all values are produced.
    """
    check_size(height, width)
    data = _rle_bytes(rle)
    if len(data) * 8 < _HEADER_BITS:
        raise ValueError(f"brush RLE is {len(data)} bytes, shorter than its 7-byte header: the stream ends early")
    header = int.from_bytes(data[:8].ljust(8, b"\0"), "big")
    num = header >> 32
    word_size = ((header >> 27) & 31) + 1
    sizes = [((header >> (23 - 4 * k)) & 15) + 1 for k in range(4)]
    expected = height * width * 4
    if word_size != WORD_SIZE:
        raise ValueError(f"brush RLE has {word_size}-bit words; Label Studio brush masks use {WORD_SIZE}-bit words")
    if num != expected:
        raise ValueError(f"brush RLE decodes to {num} values, expected {expected} ({height}x{width}x4)")
    values = _decode_values(data, num, sizes)
    alpha = values.reshape(height, width, 4)[:, :, 3]
    return (alpha > _ALPHA_THRESHOLD).astype(np.uint8)


def _pack_fields(codes: np.ndarray, widths: np.ndarray) -> list[int]:
    """Write each code in its number of bits, most significant bit first, and pack to bytes.

    Vectorised: every output bit is (code >> shift) & 1 of the field it belongs to. Fields are
    handled a block at a time so the int64 temporaries stay small for huge masks.
    """
    ends = np.cumsum(widths)
    bits = np.empty(int(ends[-1]), dtype=np.uint8)
    for first in range(0, len(widths), _FIELDS_PER_BLOCK):
        block = slice(first, first + _FIELDS_PER_BLOCK)
        block_widths, block_ends = widths[block], ends[block]
        start = int(block_ends[0] - block_widths[0])
        owner = np.repeat(np.arange(len(block_widths)), block_widths)
        position = np.arange(start, int(block_ends[-1]))
        shift = block_ends[owner] - 1 - position
        bits[start:int(block_ends[-1])] = (codes[block][owner] >> shift) & 1
    return np.packbits(bits).tolist()  # packbits zero-pads the last byte, as rle-pack does


def _decode_values(data: bytes, num: int, sizes: list[int]) -> np.ndarray:
    """Unpack the chunks after the header into ``num`` 8-bit values.

    The chunk walk is sequential (each chunk's start depends on the previous one), so it is a
    Python loop, but it costs O(1) per chunk whatever the run length: a chunk's header, length and
    (for a repeat) its value all lie within one 64-bit window read from the bytes. Repeats are
    expanded with np.repeat and literal words gathered with one vectorised read at the end.
    """
    padded = data + bytes(8)  # so every 64-bit window read stays inside the buffer
    total_bits = len(data) * 8
    masks = [(1 << s) - 1 for s in sizes]
    run_lengths: list[int] = []
    run_values: list[int] = []
    literal_at: list[int] = []  # bit position of a literal chunk's first word, -1 for repeats
    position, produced = _HEADER_BITS, 0
    while produced < num:
        if position + 3 > total_bits:
            raise ValueError(f"brush RLE stream ends early: {produced} of {num} values decoded")
        offset = position & 7
        window = int.from_bytes(padded[position >> 3:(position >> 3) + 8], "big")
        head = (window >> (61 - offset)) & 7
        field = sizes[head & 3]
        run = ((window >> (61 - offset - field)) & masks[head & 3]) + 1
        # rle-pack's JavaScript decoder would silently clip such a chunk; no encoder writes one,
        # so it means a damaged stream and is reported rather than guessed at.
        if produced + run > num:
            raise ValueError(f"brush RLE chunk at bit {position} runs past the {num} values the header announces")
        if head & 4:  # repeat: one word, written `run` times
            end = position + 3 + field + WORD_SIZE
            value, first_word = (window >> (64 - offset - 3 - field - WORD_SIZE)) & 0xFF, -1
        else:  # literal: `run` words follow
            end = position + 3 + field + WORD_SIZE * run
            value, first_word = 0, position + 3 + field
        if end > total_bits:
            raise ValueError(f"brush RLE stream ends early: {produced} of {num} values decoded, "
                             f"the next chunk needs {end - total_bits} bits more than the data holds")
        run_lengths.append(run)
        run_values.append(value)
        literal_at.append(first_word)
        position, produced = end, produced + run

    lengths = np.asarray(run_lengths, dtype=np.int64)
    out = np.repeat(np.asarray(run_values, dtype=np.uint8), lengths)
    first_words = np.asarray(literal_at, dtype=np.int64)
    literal = first_words >= 0
    if literal.any():
        lit_lengths = lengths[literal]
        lit_out_start = (np.cumsum(lengths) - lengths)[literal]
        within = np.arange(int(lit_lengths.sum())) - np.repeat(np.cumsum(lit_lengths) - lit_lengths, lit_lengths)
        bit = np.repeat(first_words[literal], lit_lengths) + WORD_SIZE * within
        raw = np.frombuffer(padded, dtype=np.uint8).astype(np.uint16)
        pair = (raw[bit >> 3] << 8) | raw[(bit >> 3) + 1]  # an unaligned byte spans two bytes
        out[np.repeat(lit_out_start, lit_lengths) + within] = (pair >> (8 - (bit & 7))) & 0xFF
    return out


def _rle_bytes(rle: Sequence[int]) -> bytes:
    """The RLE list as bytes, refusing anything that is not a flat list of integers 0-255."""
    if isinstance(rle, (bytes, bytearray)):
        return bytes(rle)
    array = np.asarray(rle)
    if array.ndim != 1 or (array.size and array.dtype.kind not in "iu"):
        raise ValueError(f"brush RLE must be a flat list of integers 0-255, "
                         f"got {array.dtype} values of shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"brush RLE must hold byte values 0-255, found {int(array.min())}..{int(array.max())}")
    return array.astype(np.uint8).tobytes()


def check_size(height: int, width: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"image {name} must be a positive integer, got {value!r}")
