/* fuzz_image.c - fuzz target for image intake (media/image.h): format
 * detection, header probing, decoding with leptonica and EXIF orientation,
 * and the base64 intake of the JSON routes.
 *
 * Input layout: if it starts with "b64:", the rest is the text of a JSON
 * "image" field (optional data: prefix, strict base64) and the decoded bytes
 * go on as below; otherwise the input is the file itself. Decoding is capped
 * at 1 megapixel so a run stays fast. Invariants: a probe that succeeds gives
 * a non-empty size within the cap and a known format; a decode that succeeds
 * gives a PIX within the cap, of exactly the size the probe said decoding
 * makes (turned by an EXIF orientation of 5-8; only a JPEG, PNG or WebP has
 * one); a failure leaves no PIX and says why. */
#include <leptonica/allheaders.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "media/image.h"

#define FUZZ_MAX_PIXELS 1000000u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void intake(const unsigned char *p, size_t n) {
    image_info info;
    char err[512];
    err[0] = '\0';
    int rc = image_probe(p, n, FUZZ_MAX_PIXELS, &info, err, sizeof err);
    if (rc == 0 && (info.width == 0 || info.height == 0 || (uint64_t)info.width * info.height > FUZZ_MAX_PIXELS))
        abort();
    if (rc != 0 && !err[0]) abort();
    if (image_mime(image_detect(p, n)) == NULL && rc == 0) abort();
    PIX *pix = NULL;
    image_info di;
    rc = image_decode(p, n, FUZZ_MAX_PIXELS, &pix, &di, err, sizeof err);
    if (rc == 0) {
        if (!pix) abort();
        uint64_t w = (uint64_t)pixGetWidth(pix), h = (uint64_t)pixGetHeight(pix);
        if (w * h > FUZZ_MAX_PIXELS) abort();
        if (di.orientation != 1 && di.format != IMAGE_JPEG && di.format != IMAGE_PNG && di.format != IMAGE_WEBP)
            abort();
        bool turned = di.orientation >= 5;
        if (w != (turned ? di.decoded_height : di.decoded_width) || h != (turned ? di.decoded_width : di.decoded_height))
            abort();
        pixDestroy(&pix);
    } else if (pix) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image_lib_init();
    if (size >= 4 && !memcmp(data, "b64:", 4)) {
        unsigned char *bytes;
        size_t n;
        char err[256];
        if (image_from_base64((const char *)data + 4, size - 4, &bytes, &n, err, sizeof err) == 0) {
            intake(bytes, n);
            smp_free(bytes);
        }
        return 0;
    }
    intake(data, size);
    return 0;
}
