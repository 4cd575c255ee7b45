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
 * could not start: err says why) or -SMP_E_INTERNAL. */
struct Pix;
int ocr_image(struct Pix *pix, const char *lang, char **text, char *err, size_t errlen);

#endif
