/* image.h - image intake: format detection by content, header probing of the
 * dimensions before any decoding, decoding with leptonica, EXIF orientation,
 * and the base64 intake of the JSON routes.
 *
 * Every function takes untrusted bytes and never crashes on them: a bad file
 * is -SMP_E_FORMAT with err = "Invalid image file: <why>", an image whose
 * header claims more than max_pixels is -SMP_E_TOO_LARGE, refused before any
 * pixel memory is allocated. Main data structure: image_info, what the header
 * says (format, width, height as stored before EXIF rotation, and the
 * EXIF orientation 1..8 of a JPEG (APP1), PNG (eXIf chunk) or WebP (EXIF
 * chunk); 1 for every other format or without EXIF), how many pixels
 * decoding will allocate (every frame of an animated GIF counts) and the
 * size of the PIX the decoder makes, which image_decode holds it to.
 *
 * The probe reads each header the way the decoder will (the first TIFF
 * directory and the first entry of a tag, the first JPEG frame header, the
 * first GIF frame) and refuses a file the decoders would read differently or
 * that could make them read a bigger image than the one checked: a TIFF
 * giving its width or height twice with different values, a JPEG with two
 * frame headers or more than JPEG_MAX_SCANS scans, a PNG with two IHDR
 * chunks. image.c's opening comment lists the decoders' rules. */
#ifndef SMP_MEDIA_IMAGE_H
#define SMP_MEDIA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    IMAGE_UNKNOWN = 0,
    IMAGE_PNG,
    IMAGE_JPEG,
    IMAGE_GIF,
    IMAGE_WEBP,
    IMAGE_BMP,
    IMAGE_TIFF,
} image_format;

typedef struct {
    image_format format;
    uint32_t width, height; /* as stored (before orientation) */
    int orientation;        /* EXIF 1..8 (1: as stored) */
    int frames;             /* GIF: frames in the file; 1 otherwise */
    uint64_t pixels;        /* what decoding allocates: width*height, or a GIF's sum over its frames */
    uint32_t decoded_width, decoded_height; /* the PIX the decoder makes, before EXIF orientation:
                                               width x height, a GIF's first frame, a TIFF turned
                                               by its Orientation tag */
} image_info;

/* The most scans a JPEG may have: a progressive decode passes over the
 * whole image once per scan (real files have about 10). */
#define JPEG_MAX_SCANS 100

/* The format the first bytes announce (IMAGE_UNKNOWN when none). */
image_format image_detect(const unsigned char *p, size_t n);
const char *image_format_name(image_format f); /* "png", ... "unknown" */
const char *image_mime(image_format f);        /* "image/png", ... NULL for unknown */

/* Read the header only: format, dimensions, orientation (for a GIF, walk its
 * block structure to count frames). Returns 0, -SMP_E_FORMAT (err says why)
 * or, when max_pixels > 0 and width*height or info.pixels exceeds it,
 * -SMP_E_TOO_LARGE. Allocates nothing. */
int image_probe(const unsigned char *p, size_t n, uint64_t max_pixels, image_info *out, char *err, size_t errlen);

/* Probe, then decode into a leptonica PIX (caller frees with pixDestroy), the
 * EXIF orientation applied. Errors as image_probe, plus -SMP_E_NOMEM. A
 * truncated or corrupt body is -SMP_E_FORMAT, and so is a decode whose PIX
 * is not decoded_width x decoded_height. While decoding, leptonica cannot
 * allocate a PIX bigger than the probe's size allows (a 32-bit pixel each),
 * so a decoder that reads another size fails instead of allocating it.
 * info may be NULL. */
struct Pix;
int image_decode(const unsigned char *p, size_t n, uint64_t max_pixels, struct Pix **out, image_info *info, char *err,
                 size_t errlen);

/* Base64 intake of a JSON "image" field: an optional
 * "data:image/...;base64," prefix, then strict base64. "http..." is refused
 * (no server-side fetching). On success *out (smp_free) holds the bytes.
 * Returns 0 or -SMP_E_BAD_REQUEST with err set; the bytes are not checked
 * for being an image (image_probe does that). */
int image_from_base64(const char *s, size_t len, unsigned char **out, size_t *outlen, char *err, size_t errlen);

/* image_from_base64, then image_probe of the bytes (format and dimensions,
 * no pixel decoding): the whole check of an image that is forwarded rather
 * than decoded here (chat messages), or decoded later (the vision routes).
 * Returns 0 with *out (smp_free) holding the bytes, or -SMP_E_BAD_REQUEST
 * (base64, URL), -SMP_E_FORMAT ("Invalid image file: ...") or
 * -SMP_E_TOO_LARGE with err set and *out NULL. info may be NULL. */
int image_from_base64_probed(const char *s, size_t len, uint64_t max_pixels, unsigned char **out, size_t *outlen,
                             image_info *info, char *err, size_t errlen);

/* Silence leptonica's own stderr messages and install its PIX allocator
 * (malloc and free, with the limit image_decode sets for its own thread);
 * done by image_decode too; safe to call more than once, from any thread.
 * A later setPixMemoryManager() replaces the limit. */
void image_lib_init(void);

#endif
