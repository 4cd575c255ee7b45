/* ocr.h - text recognition in-process with Tesseract (its C API).
 *
 * One Tesseract handle per thread (thread-local, created on first use, kept
 * for the thread's life and re-initialised only when another language is
 * asked for); a pthread key destructor deletes it when the thread ends. Call
 * ocr_* only from worker threads, never from an HTTP thread: a page takes
 * tens to hundreds of milliseconds.
 *
 * Languages are the *.traineddata files in the tessdata folder
 * ($TESSDATA_PREFIX when set, else Debian's /usr/share/tesseract-ocr/5/tessdata);
 * a request names one ("eng") or several joined by '+' ("eng+deu"). */
#ifndef SMP_MEDIA_OCR_H
#define SMP_MEDIA_OCR_H

#include <stdbool.h>
#include <stddef.h>

#define OCR_LANG_MAX 64

/* Folder Tesseract reads its data from. */
const char *ocr_datapath(void);
/* Installed languages, comma-separated ("eng, osd"), into out. Returns the count. */
int ocr_languages(char *out, size_t n);
/* Is every '+'-joined part of lang installed? */
bool ocr_language_ok(const char *lang);

/* Recognise the text of a leptonica image. *text (smp_free) gets UTF-8 with
 * trailing whitespace trimmed. Returns 0, -SMP_E_VALIDATION (language not
 * installed; err lists the installed ones), -SMP_E_UNAVAILABLE (Tesseract
 * could not start: err says why) or -SMP_E_INTERNAL. No time limit. */
struct Pix;
int ocr_image(struct Pix *pix, const char *lang, char **text, char *err, size_t errlen);

/* How long a recognition may run, and how it learns that nobody waits for
 * it any more. Tesseract looks at both between words (through its
 * ETEXT_DESC monitor), not during its page layout analysis, so a stop
 * waits at least for the layout to finish: 0.9 s for a 1400x1400 page of
 * 1-bit noise, 2.3 s for 2000x2000 of 8-bit noise, on one core (the whole
 * recognition of those takes 7.5 s and 12.6 s). */
typedef struct {
    int timeout_ms;                /* > 0: stop after this long */
    bool (*cancelled)(void *ud);   /* may be NULL; asked at most every OCR_POLL_MS */
    void *ud;
} ocr_limits;
#define OCR_POLL_MS 50

/* ocr_image within limits (NULL: none). Adds -SMP_E_TIMEOUT (timeout_ms
 * passed; err says so) and OCR_CANCELLED (cancelled() said yes; no text). */
#define OCR_CANCELLED 1
int ocr_image_limited(struct Pix *pix, const char *lang, const ocr_limits *lim, char **text, char *err, size_t errlen);

#endif
