/* image.c - see image.h. Header layouts read here (all offsets from the
 * start of the file unless said otherwise; BE/LE = byte order):
 *
 * PNG   0  8  signature 89 50 4E 47 0D 0A 1A 0A
 *       8  4  first chunk length (BE, 13)      12 4 "IHDR"
 *      16  4  width (BE)                       20 4 height (BE)
 *      then chunks: length 4 (BE), type 4, data, CRC 4, up to "IEND";
 *       "eXIf" data is a TIFF header and IFD0 (as in a JPEG's APP1, without
 *       the "Exif\0\0" prefix)
 * GIF   0  6  "GIF87a" | "GIF89a"
 *       6  2  screen width (LE)                 8 2 screen height (LE)
 *      10  1  flags (bit 7: global colour table of 3 * 2^((flags&7)+1) bytes)
 *      13  .. blocks: 0x21 label {size data}* 0 (extension) | 0x2C image
 *             descriptor: left 2, top 2, width 2, height 2 (LE), flags 1 (bit 7:
 *             local colour table, sized as above), LZW code size 1,
 *             {size data}* 0  | 0x3B trailer
 * WebP  0  4  "RIFF"   4 4 size   8 4 "WEBP"   12 4 first chunk tag
 *       "VP8X": 24 3 canvas width-1 (LE)  27 3 canvas height-1 (LE)
 *       "VP8 ": 23 3 start code 9D 01 2A  26 2 width (LE, low 14 bits)  28 2 height
 *       "VP8L": 20 1 signature 2F  21 4 bits 0-13 width-1, bits 14-27 height-1 (LE)
 *       chunks: tag 4, size 4 (LE), data padded to an even size; an "EXIF"
 *       chunk (extended files, VP8X flag 0x08) holds a TIFF header and IFD0
 * BMP   0  2  "BM"    14 4 DIB header size (LE)
 *       size 12 (OS/2): 18 2 width  20 2 height;  otherwise 18 4 width  22 4 height
 *       (signed; a negative height is a top-down bitmap)
 * TIFF  0  4  "II*\0" (LE) | "MM\0*" (BE)   4 4 offset of the first IFD
 *       IFD: count 2, then count entries of 12 bytes: tag 2, type 2, count 4,
 *       value/offset 4 (a single BYTE 1/SBYTE 6 sits in the first byte,
 *       SHORT 3/SSHORT 8 in the first 2, LONG 4/SLONG 9 in all 4). Tags:
 *       256 ImageWidth, 257 ImageLength, 274 Orientation.
 * JPEG  FF D8, then segments FF <marker> [length 2 (BE, includes itself)]:
 *       SOFn (C0-C3, C5-C7, C9-CB, CD-CF): precision 1, height 2, width 2
 *       APP1 (E1) "Exif\0\0" + a TIFF header and IFD0 (Orientation 274)
 *       SOS (DA): its header, then entropy-coded data up to the next marker
 *       that is not FF 00 (a stuffed FF) or a restart FF D0-D7; markers
 *       D0-D7, 01 and fill bytes FF carry no length.
 *
 * What the decoders (leptonica 1.82 over libpng, libjpeg-turbo, giflib 5.2,
 * libwebp, libtiff 4.5) read, which the probe must read the same way, since
 * the pixel limit is checked on the probe's answer:
 *   PNG   the IHDR that must come first; libpng fails on a second IHDR.
 *   JPEG  the first SOF; libjpeg fails on a second one ("two SOF markers"),
 *         wherever it sits. An EXIF thumbnail is APP1 data, never decoded.
 *   GIF   giflib (DGifSlurp) decodes every frame into its own buffer of the
 *         frame's size; leptonica makes its PIX from the first frame alone.
 *   WebP  the VP8X canvas (or the VP8/VP8L frame of a simple file).
 *   BMP   the info header; leptonica also needs the pixel data in the file.
 *   TIFF  the first directory only (leptonica reads page 0; SubIFDs and
 *         later IFDs are not touched). In it libtiff takes the FIRST entry of
 *         a tag and ignores repeats; a file that repeats ImageWidth or
 *         ImageLength with another value is refused as ambiguous. Leptonica
 *         applies the TIFF Orientation tag itself (5-8 swap width and height).
 * Bytes, not just pixels: leptonica's PIX is at most 32 bits a pixel, and
 * what the decoders hold beside it is a small multiple of the pixels too
 * (libtiff's RGBA raster 4 bytes and strip buffers up to 8 for 4 x 16-bit
 * planes, libjpeg's coefficients 2 per component for a progressive file
 * and leptonica takes 1, 3 or 4 components, libpng's rows after 16-bit
 * stripping, libwebp's lossless ARGB 4), so the pixel limit bounds memory;
 * leptonica refuses more than 4 TIFF samples or 16 bits a sample before
 * allocating. CPU: a progressive JPEG decodes every scan over the whole
 * image, so the number of scans is capped (JPEG_MAX_SCANS).
 *
 * EXIF orientation, and what makes the stored image upright:
 *   1 none  2 flip left-right  3 rotate 180  4 flip top-bottom
 *   5 transpose (rotate 90 cw, flip left-right)  6 rotate 90 cw
 *   7 transverse (rotate 90 cw, flip top-bottom)  8 rotate 270 cw */
#include "media/image.h"

#include <leptonica/allheaders.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"

/* ---- small readers (callers check the bounds) ---------------------------------------- */

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t be32(const unsigned char *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint32_t le32(const unsigned char *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const unsigned char *p) { return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...) {
    char why[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    snprintf(err, errlen, "Invalid image file: %s", why);
    return -SMP_E_FORMAT;
}

/* ---- detection ------------------------------------------------------------------------ */

image_format image_detect(const unsigned char *p, size_t n) {
    if (n >= 8 && !memcmp(p, "\x89PNG\r\n\x1a\n", 8)) return IMAGE_PNG;
    if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF) return IMAGE_JPEG;
    if (n >= 6 && (!memcmp(p, "GIF87a", 6) || !memcmp(p, "GIF89a", 6))) return IMAGE_GIF;
    if (n >= 12 && !memcmp(p, "RIFF", 4) && !memcmp(p + 8, "WEBP", 4)) return IMAGE_WEBP;
    if (n >= 2 && p[0] == 'B' && p[1] == 'M') return IMAGE_BMP;
    if (n >= 4 && (!memcmp(p, "II*\0", 4) || !memcmp(p, "MM\0*", 4))) return IMAGE_TIFF;
    return IMAGE_UNKNOWN;
}

const char *image_format_name(image_format f) {
    static const char *const names[] = {"unknown", "png", "jpeg", "gif", "webp", "bmp", "tiff"};
    return (unsigned)f < sizeof names / sizeof names[0] ? names[f] : "unknown";
}

const char *image_mime(image_format f) {
    static const char *const mimes[] = {NULL, "image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp",
                                        "image/tiff"};
    return (unsigned)f < sizeof mimes / sizeof mimes[0] ? mimes[f] : NULL;
}

/* ---- per-format headers ---------------------------------------------------------------- */

/* IFD0 of a TIFF structure, read as libtiff reads it (tif_dirread.c): the
 * first entry of a tag counts and later entries of the same tag are
 * ignored. Each value is the tag's single integer, 0 when the tag is
 * absent, -1 when its entry is not one integer libtiff would accept. */
typedef struct {
    int64_t width, height, orientation;
    unsigned conflict;          /* 256 or 257 when a later entry gives another size, else 0 */
    int64_t conflict_values[2]; /* the first value and the other one */
} tiff_tags;

enum { TIFF_TAG_WIDTH = 256, TIFF_TAG_LENGTH = 257, TIFF_TAG_ORIENTATION = 274 };
#define TIFF_MAX_ENTRIES 4096 /* libtiff refuses a directory with more */

/* The value of a directory entry holding one integer (count 1, value in
 * the entry), or -1: another type or count, or a negative signed value. */
static int64_t tiff_value(const unsigned char *e, bool le) {
    uint32_t (*r16)(const unsigned char *) = le ? le16 : be16;
    uint32_t (*r32)(const unsigned char *) = le ? le32 : be32;
    const unsigned char *v = e + 8;
    if (r32(e + 4) != 1) return -1;
    switch (r16(e + 2)) {
    case 1: return v[0];                                        /* BYTE */
    case 3: return r16(v);                                      /* SHORT */
    case 4: return r32(v);                                      /* LONG */
    case 6: return v[0] < 0x80 ? v[0] : -1;                     /* SBYTE */
    case 8: return r16(v) < 0x8000 ? (int64_t)r16(v) : -1;      /* SSHORT */
    case 9: return r32(v) < 0x80000000u ? (int64_t)r32(v) : -1; /* SLONG */
    default: return -1;
    }
}

/* Returns 0, or -1 when the IFD lies outside p[0..n) or has more entries
 * than libtiff reads. */
static int tiff_ifd0(const unsigned char *p, size_t n, tiff_tags *t) {
    memset(t, 0, sizeof *t);
    if (n < 8) return -1;
    bool le = p[0] == 'I';
    uint32_t (*r16)(const unsigned char *) = le ? le16 : be16;
    uint32_t off = le ? le32(p + 4) : be32(p + 4);
    if (off > n || n - off < 2) return -1;
    uint32_t count = r16(p + off);
    if (count > TIFF_MAX_ENTRIES || (size_t)count * 12 > n - off - 2) return -1;
    bool seen[3] = {false, false, false};
    for (uint32_t i = 0; i < count; i++) {
        const unsigned char *e = p + off + 2 + (size_t)i * 12;
        uint32_t tag = r16(e);
        int64_t *slot = tag == TIFF_TAG_WIDTH ? &t->width : tag == TIFF_TAG_LENGTH ? &t->height
                        : tag == TIFF_TAG_ORIENTATION ? &t->orientation : NULL;
        if (!slot) continue;
        bool *was = &seen[tag == TIFF_TAG_WIDTH ? 0 : tag == TIFF_TAG_LENGTH ? 1 : 2];
        int64_t v = tiff_value(e, le);
        if (!*was) {
            *slot = v;
            *was = true;
        } else if (v != *slot && tag != TIFF_TAG_ORIENTATION && !t->conflict) {
            t->conflict = tag;
            t->conflict_values[0] = *slot;
            t->conflict_values[1] = v;
        }
    }
    return 0;
}

/* The Orientation (1..8) of an EXIF block: a TIFF header and IFD0, after an
 * optional "Exif\0\0" (JPEG APP1 has it; PNG eXIf and WebP EXIF should not,
 * but some writers add it). 1 when absent, out of range or unreadable. */
static int exif_orientation(const unsigned char *t, size_t tl) {
    if (tl >= 6 && !memcmp(t, "Exif\0\0", 6)) t += 6, tl -= 6;
    tiff_tags tags;
    if (tl < 8 || (memcmp(t, "II*\0", 4) && memcmp(t, "MM\0*", 4)) || tiff_ifd0(t, tl, &tags)) return 1;
    return tags.orientation >= 1 && tags.orientation <= 8 ? (int)tags.orientation : 1;
}

static int probe_png(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 33) return fail(err, el, "PNG file truncated inside its header (%zu bytes)", n);
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4)) return fail(err, el, "PNG file does not start with an IHDR chunk");
    o->width = be32(p + 16);
    o->height = be32(p + 20);
    if (o->width > 0x7FFFFFFF || o->height > 0x7FFFFFFF) return fail(err, el, "PNG dimensions out of range");
    /* Chunk headers only (lengths skip the data), for the first eXIf (libpng
     * ignores a repeat) and a second IHDR; a cut or bad chunk ends the walk
     * and is left to the decoder. */
    bool have_exif = false;
    for (size_t at = 33; at + 12 <= n;) {
        uint32_t len = be32(p + at);
        const unsigned char *type = p + at + 4;
        if (len > n - at - 12 || !memcmp(type, "IEND", 4)) break;
        if (!memcmp(type, "IHDR", 4)) return fail(err, el, "PNG file has a second IHDR chunk");
        if (!memcmp(type, "eXIf", 4) && !have_exif) {
            o->orientation = exif_orientation(p + at + 8, len);
            have_exif = true;
        }
        at += 12 + (size_t)len;
    }
    return 0;
}

/* giflib (DGifSlurp, which leptonica calls) decodes every frame of an
 * animated GIF into its own raster, so the pixels a GIF costs are the sum
 * over its frames: a few kilobytes of LZW per frame can claim 40 megapixels
 * each. The first frame may also be larger than the logical screen.
 * giflib also keeps every frame's record and every extension sub-block in
 * memory until the end, about 100 and 56 bytes each: 2-byte sub-blocks made
 * a 10 MB file take 282 MB (2.8 GB for a 100 MB upload), hence a cap on
 * their number (GIF_MAX_BLOCKS: about 20 MB, far above real files, which
 * have a frame and a sub-block or two of extensions per frame). */
#define GIF_MAX_BLOCKS 200000

static int probe_gif(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 13) return fail(err, el, "GIF file truncated inside its header (%zu bytes)", n);
    o->width = le16(p + 6);
    o->height = le16(p + 8);
    size_t at = 13;
    if (p[10] & 0x80) at += 3u * (1u << ((p[10] & 7) + 1));
    int frames = 0;
    long blocks = 0; /* frames and extension sub-blocks */
    while (at < n && p[at] != 0x3B) {
        bool extension = p[at] == 0x21;
        if (p[at] == 0x2C) {
            if (at + 11 > n) break;
            uint32_t fw = le16(p + at + 5), fh = le16(p + at + 7);
            if (fw == 0 || fh == 0) return fail(err, el, "GIF frame %d is empty (%u x %u)", frames + 1, fw, fh);
            if (frames++ == 0) {
                uint32_t right = le16(p + at + 1) + fw, bottom = le16(p + at + 3) + fh;
                if (right > o->width) o->width = right;
                if (bottom > o->height) o->height = bottom;
                o->decoded_width = fw; /* leptonica's PIX is the first frame */
                o->decoded_height = fh;
            }
            o->pixels += (uint64_t)fw * fh;
            unsigned flags = p[at + 9];
            at += 10;
            if (flags & 0x80) at += 3u * (1u << ((flags & 7) + 1));
            at++; /* LZW minimum code size */
        } else if (p[at] == 0x21) {
            at += 2; /* introducer, label */
        } else {
            break; /* not a block: the decoder stops here too */
        }
        for (; at < n && p[at]; at += 1u + p[at]) /* data sub-blocks */
            blocks += extension;
        at++; /* block terminator */
        if (frames + blocks > GIF_MAX_BLOCKS)
            return fail(err, el, "GIF file has more than %d frames and extension blocks (the decoder keeps every one in memory)",
                        GIF_MAX_BLOCKS);
    }
    if (frames == 0) return fail(err, el, "GIF file has no complete image descriptor (truncated or corrupt)");
    o->frames = frames;
    return 0;
}

static int probe_webp(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 30) return fail(err, el, "WebP file truncated inside its header (%zu bytes)", n);
    const unsigned char *c = p + 12;
    if (!memcmp(c, "VP8X", 4)) {
        o->width = le24(p + 24) + 1;
        o->height = le24(p + 27) + 1;
    } else if (!memcmp(c, "VP8 ", 4)) {
        if (p[23] != 0x9D || p[24] != 0x01 || p[25] != 0x2A) return fail(err, el, "WebP VP8 frame has no start code");
        o->width = le16(p + 26) & 0x3FFF;
        o->height = le16(p + 28) & 0x3FFF;
    } else if (!memcmp(c, "VP8L", 4)) {
        if (p[20] != 0x2F) return fail(err, el, "WebP lossless frame has a bad signature");
        uint32_t bits = le32(p + 21);
        o->width = (bits & 0x3FFF) + 1;
        o->height = ((bits >> 14) & 0x3FFF) + 1;
    } else {
        return fail(err, el, "WebP file has an unknown first chunk");
    }
    /* Only an extended file (VP8X) that says it has one carries an EXIF chunk. */
    if (memcmp(c, "VP8X", 4) || !(p[20] & 0x08)) return 0;
    for (size_t at = 12; at + 8 <= n;) {
        uint32_t len = le32(p + at + 4);
        if (len > n - at - 8) break;
        if (!memcmp(p + at, "EXIF", 4)) {
            o->orientation = exif_orientation(p + at + 8, len);
            break;
        }
        at += 8 + (size_t)len + (len & 1);
    }
    return 0;
}

static int probe_bmp(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    if (n < 26) return fail(err, el, "BMP file truncated inside its header (%zu bytes)", n);
    uint32_t hs = le32(p + 14);
    if (hs == 12) {
        o->width = le16(p + 18);
        o->height = le16(p + 20);
        return 0;
    }
    if (hs < 40 || n < 30) return fail(err, el, "BMP file has an unknown header size %u", hs);
    int32_t w = (int32_t)le32(p + 18), h = (int32_t)le32(p + 22);
    if (w <= 0 || h == 0 || h == INT32_MIN) return fail(err, el, "BMP dimensions %d x %d are invalid", w, h);
    o->width = (uint32_t)w;
    o->height = (uint32_t)(h < 0 ? -h : h);
    return 0;
}

static int probe_tiff(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    tiff_tags t;
    if (tiff_ifd0(p, n, &t) != 0)
        return fail(err, el, "TIFF file truncated or corrupt (its first directory lies outside the file)");
    if (t.width < 0 || t.height < 0)
        return fail(err, el, "TIFF %s tag is not a single unsigned integer", t.width < 0 ? "ImageWidth" : "ImageLength");
    if (t.conflict)
        return fail(err, el, "TIFF file gives %s twice with different values (%lld and %lld); refused as ambiguous",
                    t.conflict == TIFF_TAG_WIDTH ? "ImageWidth" : "ImageLength", (long long)t.conflict_values[0],
                    (long long)t.conflict_values[1]);
    o->width = (uint32_t)t.width;
    o->height = (uint32_t)t.height;
    /* Leptonica turns the image upright by this tag itself (libtiff ignores
     * a value outside 1..8); 5-8 swap the sides. */
    bool swapped = t.orientation >= 5 && t.orientation <= 8;
    o->decoded_width = swapped ? o->height : o->width;
    o->decoded_height = swapped ? o->width : o->height;
    return 0;
}

static bool jpeg_sof(unsigned m) {
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

/* The entropy-coded data of a scan, from p[at]: the offset of the marker
 * that ends it, or n when the file ends first. */
static size_t jpeg_skip_scan(const unsigned char *p, size_t n, size_t at) {
    while (at < n) {
        const unsigned char *ff = memchr(p + at, 0xFF, n - at);
        if (!ff || ff + 1 >= p + n) return n;
        at = (size_t)(ff - p);
        unsigned m = ff[1];
        if (m != 0x00 && m != 0xFF && !(m >= 0xD0 && m <= 0xD7)) return at;
        at += m == 0xFF ? 1 : 2; /* FF FF: the second FF may start the marker */
    }
    return n;
}

/* Walks every segment up to EOI (through the scans' data): libjpeg reads
 * the same segments and fails on a second SOF; a progressive decode passes
 * over the whole image once per scan, so scans are counted. Before the
 * first scan the header must be well formed. After it, libjpeg skips stray
 * bytes up to the next FF (a warning, and leptonica has already decoded
 * every scan of a progressive file by the time it looks at warnings), so
 * the walk does the same and a corrupt body is left to the decoder. */
static int probe_jpeg(const unsigned char *p, size_t n, image_info *o, char *err, size_t el) {
    size_t at = 2;
    bool have_sof = false, have_exif = false;
    int scans = 0;
    while (at < n) {
        if (p[at] != 0xFF) {
            if (!scans) return fail(err, el, "JPEG segment marker expected at offset %zu", at);
            const unsigned char *ff = memchr(p + at, 0xFF, n - at);
            if (!ff) break;
            at = (size_t)(ff - p);
        }
        while (at < n && p[at] == 0xFF) at++; /* fill bytes */
        if (at >= n) break;
        unsigned m = p[at++];
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        if (m == 0xD9) break;
        if (at + 2 > n) break;
        uint32_t len = be16(p + at);
        if (len < 2 && !scans) return fail(err, el, "JPEG segment with a bad length at offset %zu", at);
        if (len < 2) len = 2;
        if (at + len > n) break;
        const unsigned char *s = p + at + 2;
        size_t sl = len - 2;
        if (jpeg_sof(m)) {
            if (have_sof) return fail(err, el, "JPEG file has a second frame header (SOF) at offset %zu", at - 2);
            if (sl < 5) return fail(err, el, "JPEG frame header too short");
            o->height = be16(s + 1);
            o->width = be16(s + 3);
            have_sof = true;
        } else if (m == 0xDA) {
            if (!have_sof) return fail(err, el, "JPEG scan before any frame header");
            if (++scans > JPEG_MAX_SCANS)
                return fail(err, el, "JPEG file has more than %d scans (each one is a pass over the whole image)",
                            JPEG_MAX_SCANS);
            at = jpeg_skip_scan(p, n, at + len);
            continue;
        } else if (m == 0xE1 && sl > 6 && !memcmp(s, "Exif\0\0", 6) && !have_exif) {
            o->orientation = exif_orientation(s, sl);
            have_exif = true;
        }
        at += len;
    }
    if (scans == 0) return fail(err, el, "JPEG file truncated before its image data");
    return 0;
}

int image_probe(const unsigned char *p, size_t n, uint64_t max_pixels, image_info *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->orientation = 1;
    out->frames = 1;
    if (!p || n == 0) return fail(err, errlen, "the file is empty (0 bytes)");
    out->format = image_detect(p, n);
    int rc;
    switch (out->format) {
    case IMAGE_PNG: rc = probe_png(p, n, out, err, errlen); break;
    case IMAGE_JPEG: rc = probe_jpeg(p, n, out, err, errlen); break;
    case IMAGE_GIF: rc = probe_gif(p, n, out, err, errlen); break;
    case IMAGE_WEBP: rc = probe_webp(p, n, out, err, errlen); break;
    case IMAGE_BMP: rc = probe_bmp(p, n, out, err, errlen); break;
    case IMAGE_TIFF: rc = probe_tiff(p, n, out, err, errlen); break;
    default:
        return fail(err, errlen, "unrecognised format (expected PNG, JPEG, GIF, WebP, BMP or TIFF content)");
    }
    if (rc) return rc;
    if (out->width == 0 || out->height == 0)
        return fail(err, errlen, "%s header gives an empty size (%u x %u)", image_format_name(out->format), out->width,
                    out->height);
    if (out->decoded_width == 0) {
        out->decoded_width = out->width;
        out->decoded_height = out->height;
    }
    uint64_t px = (uint64_t)out->width * out->height;
    if (out->pixels < px) out->pixels = px;
    if (max_pixels && px > max_pixels) {
        snprintf(err, errlen, "Image too large: %u x %u pixels (%.1f megapixels) exceeds the limit of %.1f megapixels (MAX_IMAGE_MP)",
                 out->width, out->height, (double)px / 1e6, (double)max_pixels / 1e6);
        return -SMP_E_TOO_LARGE;
    }
    if (max_pixels && out->pixels > max_pixels) {
        snprintf(err, errlen, "Image too large: its %d frames hold %.1f megapixels in all, over the limit of %.1f megapixels (MAX_IMAGE_MP)",
                 out->frames, (double)out->pixels / 1e6, (double)max_pixels / 1e6);
        return -SMP_E_TOO_LARGE;
    }
    return 0;
}

/* ---- decoding ------------------------------------------------------------------------- */

static void lept_to_log(const char *msg) { log_debug("leptonica: %.*s", (int)strcspn(msg, "\n"), msg); }

/* Leptonica allocates every PIX's pixels through one process-wide hook.
 * While a thread decodes, pix_limit holds the bytes the probed size allows
 * and a bigger PIX is refused, so a decoder that reads another size than the
 * probe fails instead of allocating it. 0: this thread is not decoding. The
 * blocks are plain malloc ones: leptonica and Tesseract free PIX data they
 * did not allocate through here with free(). */
static __thread uint64_t pix_limit;

static void *pix_alloc(size_t n) { return pix_limit && n > pix_limit ? NULL : malloc(n); }

static void lib_init_once(void) {
    setMsgSeverity(L_SEVERITY_NONE);
    leptSetStderrHandler(lept_to_log);
    setPixMemoryManager(pix_alloc, free);
}

void image_lib_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, lib_init_once);
}

/* Make the stored image upright (orientation as in the table on top). */
static PIX *apply_orientation(PIX *pix, int orient) {
    PIX *t = NULL, *u = NULL;
    switch (orient) {
    case 2: return pixFlipLR(NULL, pix);
    case 3: return pixRotate180(NULL, pix);
    case 4: return pixFlipTB(NULL, pix);
    case 6: return pixRotateOrth(pix, 1);
    case 8: return pixRotateOrth(pix, 3);
    case 5:
    case 7:
        t = pixRotateOrth(pix, 1);
        if (!t) return NULL;
        u = orient == 5 ? pixFlipLR(NULL, t) : pixFlipTB(NULL, t);
        pixDestroy(&t);
        return u;
    default: return pixClone(pix);
    }
}

int image_decode(const unsigned char *p, size_t n, uint64_t max_pixels, PIX **out, image_info *info, char *err,
                 size_t errlen) {
    image_info local;
    image_info *in = info ? info : &local;
    *out = NULL;
    int rc = image_probe(p, n, max_pixels, in, err, errlen);
    if (rc) return rc;
    image_lib_init();
    PIX *pix = NULL;
    /* A PIX is at most 4 bytes a pixel and its rows never hold more words
     * than pixels, so 4 * width * height bounds every PIX of the probed size
     * (and the same size turned 90 degrees). */
    pix_limit = 4 * (uint64_t)in->decoded_width * in->decoded_height;
    if (in->format == IMAGE_JPEG) {
        /* libjpeg only warns on a corrupt or cut body (and fills in gray);
         * leptonica fails on any warning unless told to continue (hint 0),
         * and the warning count is checked as well. */
        l_int32 nwarn = 0;
        pix = pixReadMemJpeg(p, n, 0, 1, &nwarn, 0);
        if (pix && nwarn > 0) pixDestroy(&pix);
    } else {
        pix = pixReadMem(p, n);
    }
    pix_limit = 0;
    if (!pix)
        return fail(err, errlen, "the %s data is truncated or corrupt (the decoder failed)", image_format_name(in->format));
    /* What the decoder made must be what the probe read (the limit was
     * checked against that). */
    uint32_t pw = (uint32_t)pixGetWidth(pix), ph = (uint32_t)pixGetHeight(pix);
    if (pw != in->decoded_width || ph != in->decoded_height) {
        pixDestroy(&pix);
        return fail(err, errlen, "the decoded %s image is %u x %u, not the %u x %u its header gives",
                    image_format_name(in->format), pw, ph, in->decoded_width, in->decoded_height);
    }
    if (in->orientation != 1) {
        PIX *r = apply_orientation(pix, in->orientation);
        pixDestroy(&pix);
        if (!r) return -SMP_E_NOMEM;
        pix = r;
    }
    *out = pix;
    return 0;
}

/* ---- base64 intake ------------------------------------------------------------------- */

int image_from_base64(const char *s, size_t len, unsigned char **out, size_t *outlen, char *err, size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (len >= 4 && !strncmp(s, "http", 4)) {
        snprintf(err, errlen, "Image URLs are not supported (no server-side fetching): send the image as base64");
        return -SMP_E_BAD_REQUEST;
    }
    if (len >= 5 && !strncmp(s, "data:", 5)) {
        const char *comma = memchr(s, ',', len);
        if (!comma) {
            snprintf(err, errlen, "Invalid data URL: no ',' before the image data");
            return -SMP_E_BAD_REQUEST;
        }
        size_t hl = (size_t)(comma - s);
        bool b64 = hl >= 7 && !memcmp(comma - 7, ";base64", 7);
        if (hl < 11 || strncmp(s, "data:image/", 11) || !b64) {
            snprintf(err, errlen, "Invalid data URL: expected 'data:image/<type>;base64,' before the image data");
            return -SMP_E_BAD_REQUEST;
        }
        len -= hl + 1;
        s = comma + 1;
    }
    if (len == 0) {
        snprintf(err, errlen, "Invalid image file: the image data is empty");
        return -SMP_E_BAD_REQUEST;
    }
    unsigned char *d = smp_malloc(util_b64_decoded_max(len) + 1);
    if (!d) {
        snprintf(err, errlen, "Out of memory decoding the image");
        return -SMP_E_NOMEM;
    }
    char why[160];
    long dl = util_b64_decode(s, len, d, why, sizeof why);
    if (dl <= 0) {
        smp_free(d);
        snprintf(err, errlen, "Invalid base64 image data: %s", dl == 0 ? "empty" : why);
        return -SMP_E_BAD_REQUEST;
    }
    *out = d;
    *outlen = (size_t)dl;
    return 0;
}

int image_from_base64_probed(const char *s, size_t len, uint64_t max_pixels, unsigned char **out, size_t *outlen,
                             image_info *info, char *err, size_t errlen) {
    image_info local;
    int rc = image_from_base64(s, len, out, outlen, err, errlen);
    if (rc) return rc;
    rc = image_probe(*out, *outlen, max_pixels, info ? info : &local, err, errlen);
    if (rc) {
        smp_free(*out);
        *out = NULL;
        *outlen = 0;
    }
    return rc;
}
