/* audio.c - decode any audio container FFmpeg reads, from memory, to 16 kHz
 * mono float PCM, a piece at a time.
 *
 * Pipeline: a custom AVIOContext reads the caller's buffer (mem_reader: data,
 * len, pos; with a seek callback so containers that keep their index at the
 * end, like m4a, work) -> libavformat probes the format from the content only
 * (no file name, bounded probesize/analyzeduration, and a minimum probe score so
 * random bytes are not taken for a raw stream) -> the best audio stream is
 * decoded with libavcodec -> libswresample converts every frame to mono float
 * at AUDIO_RATE -> samples are clamped to [-1, 1] (NaN -> 0).
 *
 * Main data structure: audio_stream, FFmpeg's contexts plus `pending`, the
 * converted samples of the last decoded frame that the reader has not taken
 * yet. audio_stream_read decodes only when pending is empty, so a stream holds
 * one frame's samples whatever the audio's length; rewinding closes FFmpeg's
 * side and opens it again on the same bytes (decoding is deterministic, so
 * the same samples come again). audio_decode reads a whole stream into an
 * array reserved from the container's declared duration when it has one (at
 * most 64 samples per input byte, so a header that lies costs little), grown
 * by doubling otherwise, and shrunk to its final size.
 *
 * Limits: the container's declared duration is checked when the stream is
 * opened; the sample count is checked while decoding, so an over-long input
 * stops at the limit instead of being decoded whole (the resampler is never
 * given room past it). Hostile headers are bounded too: sample rates outside
 * 1 kHz..768 kHz and more than 64 channels are refused, and no single FFmpeg
 * allocation may exceed 64 MiB (av_max_alloc, process-wide). FFmpeg's own
 * log goes to our log at DEBUG level only (never printed per request). */
#include "media/audio.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/mem.h>
#include <libavutil/opt.h>
#include <libswresample/swresample.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"

#define AUDIO_IO_BUF 32768
#define AUDIO_PROBESIZE "2000000"      /* bytes libavformat may read to find streams */
#define AUDIO_ANALYZEDURATION "5000000" /* microseconds of stream analysed */
#define AUDIO_MIN_PROBE_SCORE 25        /* AVPROBE_SCORE_RETRY: below it, a guess */
#define AUDIO_MAX_BAD_PACKETS 1000      /* undecodable packets tolerated in a stream */
#define AUDIO_MIN_RATE 1000             /* sample rates outside these are refused: an */
#define AUDIO_MAX_RATE 768000           /* absurd rate makes the resampler allocate GBs */
#define AUDIO_MAX_CHANNELS 64
#define AUDIO_MAX_ALLOC (64u << 20)     /* largest single FFmpeg allocation (av_max_alloc) */

typedef struct {
    const uint8_t *data;
    size_t len, pos;
} mem_reader;

static int mem_read(void *opaque, uint8_t *buf, int size) {
    mem_reader *m = opaque;
    size_t left = m->len - m->pos;
    if (left == 0) return AVERROR_EOF;
    size_t n = (size_t)size < left ? (size_t)size : left;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return (int)n;
}

static int64_t mem_seek(void *opaque, int64_t offset, int whence) {
    mem_reader *m = opaque;
    int64_t base;
    switch (whence & ~AVSEEK_FORCE) {
    case AVSEEK_SIZE: return (int64_t)m->len;
    case SEEK_SET: base = 0; break;
    case SEEK_CUR: base = (int64_t)m->pos; break;
    case SEEK_END: base = (int64_t)m->len; break;
    default: return AVERROR(EINVAL);
    }
    int64_t p = base + offset;
    if (p < 0 || p > (int64_t)m->len) return AVERROR(EINVAL);
    m->pos = (size_t)p;
    return p;
}

/* FFmpeg's log lines, to ours at DEBUG (and nowhere otherwise). */
static void av_log_to_ours(void *avcl, int level, const char *fmt, va_list ap) {
    (void)avcl;
    if (level > AV_LOG_VERBOSE || log_get_level() > LOG_DEBUG) return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t l = strlen(line);
    while (l && (line[l - 1] == '\n' || line[l - 1] == '\r')) line[--l] = '\0';
    if (l) log_debug("ffmpeg: %s", line);
}

static pthread_once_t av_once = PTHREAD_ONCE_INIT;
static void av_setup(void) {
    /* No single FFmpeg allocation above this: a few bytes of header claiming
     * a multi-GB metadata chunk must fail, not allocate. Audio needs far less
     * (packets and frames are KBs, a 3 h m4a index is about 1 MB). */
    av_max_alloc(AUDIO_MAX_ALLOC);
    av_log_set_level(AV_LOG_VERBOSE);
    av_log_set_callback(av_log_to_ours);
}

/* A growable float array: the stream's pending samples (one frame's worth,
 * reused), or audio_decode's result. */
typedef struct {
    float *pcm;
    size_t n, cap;
} pcm_out;

/* Room for exactly cap samples (never less than held). */
static int pcm_set_cap(pcm_out *o, size_t cap) {
    if (cap < o->n) cap = o->n;
    if (cap == 0) cap = 1;
    float *p = smp_realloc(o->pcm, cap * sizeof *p);
    if (!p) return -SMP_E_NOMEM;
    o->pcm = p;
    o->cap = cap;
    return 0;
}

/* Room for extra more samples, growing by doubling. */
static int pcm_reserve(pcm_out *o, size_t extra) {
    if (o->n + extra <= o->cap) return 0;
    size_t c = o->cap ? o->cap : AUDIO_RATE * 4;
    while (c < o->n + extra) c *= 2;
    return pcm_set_cap(o, c);
}

struct audio_stream {
    mem_reader mr;             /* the caller's bytes */
    double max_seconds;        /* 0: no limit */
    size_t max_n;              /* samples allowed (0: no limit) */
    double declared;           /* container's duration, seconds; -1 unknown */
    /* FFmpeg's side, made by stream_start and freed by stream_stop. */
    AVIOContext *io;
    AVFormatContext *fmt;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame;
    SwrContext *swr;
    AVChannelLayout cur_layout; /* what swr converts from */
    int cur_fmt, cur_rate, si;
    const char *format_name, *codec_name; /* FFmpeg's static names */
    /* Decoding progress. */
    pcm_out pending;           /* converted samples not yet read: [pos, n) */
    size_t pos;
    size_t total;              /* samples converted since the start */
    int bad_packets;
    bool input_eof;            /* the demuxer is done; the decoder was sent its flush */
    bool in_frames;            /* a packet was sent: receive its frames before the next */
    bool done;                 /* the resampler is flushed: nothing more comes */
};

/* (Re)create the converter for the frame's layout, format and rate. */
static int setup_swr(audio_stream *s, const AVFrame *f) {
    AVChannelLayout in = {0};
    if (f->ch_layout.nb_channels <= 0 || f->ch_layout.nb_channels > AUDIO_MAX_CHANNELS) return AVERROR(EINVAL);
    if (f->sample_rate < AUDIO_MIN_RATE || f->sample_rate > AUDIO_MAX_RATE) return AVERROR(EINVAL);
    if (f->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_default(&in, f->ch_layout.nb_channels);
    else if (av_channel_layout_copy(&in, &f->ch_layout) < 0) return AVERROR(ENOMEM);
    if (s->swr && !av_channel_layout_compare(&in, &s->cur_layout) && f->format == s->cur_fmt &&
        f->sample_rate == s->cur_rate) {
        av_channel_layout_uninit(&in);
        return 0;
    }
    swr_free(&s->swr);
    AVChannelLayout mono = AV_CHANNEL_LAYOUT_MONO;
    int rc = swr_alloc_set_opts2(&s->swr, &mono, AV_SAMPLE_FMT_FLT, AUDIO_RATE, &in, (enum AVSampleFormat)f->format,
                                 f->sample_rate, 0, NULL);
    if (rc >= 0) rc = swr_init(s->swr);
    av_channel_layout_uninit(&s->cur_layout);
    s->cur_layout = in;
    s->cur_fmt = f->format;
    s->cur_rate = f->sample_rate;
    return rc;
}

static void too_long(char *err, size_t errlen, double max_seconds) {
    snprintf(err, errlen, "audio is longer than the limit of %.0f seconds (MAX_AUDIO_SECONDS)", max_seconds);
}

/* Convert frame f (NULL: flush what swr holds) and append to s->pending.
 * Returns 0, -SMP_E_TOO_LARGE past max_seconds, -SMP_E_FORMAT or
 * -SMP_E_NOMEM, with err said. */
static int resample(audio_stream *s, const AVFrame *f, char *err, size_t errlen) {
    pcm_out *o = &s->pending;
    int in_n = f ? f->nb_samples : 0;
    int room = swr_get_out_samples(s->swr, in_n);
    if (room < 0) goto bad;
    if (room == 0) return 0;
    /* Never make room past the limit: what does not fit stays buffered in
     * the resampler, and filling the room means the audio is too long. */
    if (s->max_n && (size_t)room > s->max_n + 1 - s->total) room = (int)(s->max_n + 1 - s->total);
    if (pcm_reserve(o, (size_t)room)) return -SMP_E_NOMEM;
    uint8_t *dst = (uint8_t *)(o->pcm + o->n);
    int got = swr_convert(s->swr, &dst, room, f ? (const uint8_t **)f->extended_data : NULL, in_n);
    if (got < 0) goto bad;
    /* Float and 32-bit sources can carry NaN, infinities or values far out
     * of range (corrupt or hostile files): the engine gets [-1, 1]. */
    for (float *p = o->pcm + o->n, *e = p + got; p < e; p++) {
        if (!isfinite(*p)) *p = 0;
        else if (*p > 1) *p = 1;
        else if (*p < -1) *p = -1;
    }
    o->n += (size_t)got;
    s->total += (size_t)got;
    if (s->max_n && s->total > s->max_n) {
        too_long(err, errlen, s->max_seconds);
        return -SMP_E_TOO_LARGE;
    }
    return 0;
bad:
    snprintf(err, errlen, "could not resample the %s audio", s->codec_name);
    return -SMP_E_FORMAT;
}

/* FFmpeg's side of the stream, from the first byte: probe, open, check the
 * stream's shape and declared length, open the decoder. */
static int stream_start(audio_stream *s, char *err, size_t errlen) {
    AVDictionary *opts = NULL;
    char averr[128];
    int rc = -SMP_E_NOMEM, ret;
    s->mr.pos = 0;
    unsigned char *iobuf = av_malloc(AUDIO_IO_BUF);
    if (!iobuf) goto fail;
    s->io = avio_alloc_context(iobuf, AUDIO_IO_BUF, 0, &s->mr, mem_read, NULL, mem_seek);
    if (!s->io) {
        av_free(iobuf);
        goto fail;
    }
    /* Probe from the content; refuse weak guesses (random bytes can look like
     * a few MPEG frames to the raw mp3 prober). */
    const AVInputFormat *ifmt = NULL;
    ret = av_probe_input_buffer2(s->io, &ifmt, "", NULL, 0, 1 << 20);
    if (ret < 0 || !ifmt) {
        snprintf(err, errlen, "not an audio file: the data is not in any format FFmpeg recognises");
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    if (ret < AUDIO_MIN_PROBE_SCORE) {
        snprintf(err, errlen, "not an audio file: the data only faintly resembles %s", ifmt->name);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    s->format_name = ifmt->name;
    if (!(s->fmt = avformat_alloc_context())) goto fail;
    s->fmt->pb = s->io;
    s->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    av_dict_set(&opts, "probesize", AUDIO_PROBESIZE, 0);
    av_dict_set(&opts, "analyzeduration", AUDIO_ANALYZEDURATION, 0);
    ret = avformat_open_input(&s->fmt, "", ifmt, &opts);
    if (ret < 0) { /* fmt is freed by avformat_open_input on failure */
        av_strerror(ret, averr, sizeof averr);
        snprintf(err, errlen, "not a readable %s file: %s", ifmt->name, averr);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    ret = avformat_find_stream_info(s->fmt, NULL);
    if (ret < 0) {
        av_strerror(ret, averr, sizeof averr);
        snprintf(err, errlen, "could not read the %s file's streams: %s", ifmt->name, averr);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    const AVCodec *codec = NULL;
    s->si = av_find_best_stream(s->fmt, AVMEDIA_TYPE_AUDIO, -1, -1, &codec, 0);
    if (s->si < 0) {
        snprintf(err, errlen, s->si == AVERROR_DECODER_NOT_FOUND ? "the %s file's audio codec is not supported"
                                                                  : "the %s file has no audio stream",
                 ifmt->name);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    s->codec_name = codec->name;
    AVStream *st = s->fmt->streams[s->si];
    int rate = st->codecpar->sample_rate, chans = st->codecpar->ch_layout.nb_channels;
    if ((rate && (rate < AUDIO_MIN_RATE || rate > AUDIO_MAX_RATE)) || chans > AUDIO_MAX_CHANNELS) {
        snprintf(err, errlen, "the %s file's audio has an unsupported shape (%d Hz, %d channels)", ifmt->name, rate,
                 chans);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    s->declared = -1;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0) s->declared = (double)st->duration * av_q2d(st->time_base);
    else if (s->fmt->duration != AV_NOPTS_VALUE && s->fmt->duration > 0)
        s->declared = (double)s->fmt->duration / AV_TIME_BASE;
    if (s->max_seconds > 0 && s->declared > s->max_seconds + 0.5) {
        too_long(err, errlen, s->max_seconds);
        rc = -SMP_E_TOO_LARGE;
        goto fail;
    }
    if (!(s->dec = avcodec_alloc_context3(codec))) goto fail;
    if (avcodec_parameters_to_context(s->dec, st->codecpar) < 0) goto fail;
    s->dec->thread_count = 1;
    ret = avcodec_open2(s->dec, codec, NULL);
    if (ret < 0) {
        av_strerror(ret, averr, sizeof averr);
        snprintf(err, errlen, "could not open the %s decoder: %s", codec->name, averr);
        rc = -SMP_E_FORMAT;
        goto fail;
    }
    if (!(s->pkt = av_packet_alloc()) || !(s->frame = av_frame_alloc())) goto fail;
    rc = 0;
fail:
    av_dict_free(&opts);
    return rc;
}

/* Free FFmpeg's side (any part of it) and forget the progress. */
static void stream_stop(audio_stream *s) {
    swr_free(&s->swr);
    av_channel_layout_uninit(&s->cur_layout);
    av_frame_free(&s->frame);
    av_packet_free(&s->pkt);
    avcodec_free_context(&s->dec);
    avformat_close_input(&s->fmt);
    if (s->io) {
        av_freep(&s->io->buffer);
        avio_context_free(&s->io);
    }
    s->cur_fmt = -1;
    s->cur_rate = 0;
    s->pending.n = s->pos = s->total = 0;
    s->bad_packets = 0;
    s->input_eof = s->in_frames = s->done = false;
}

void audio_stream_close(audio_stream *s) {
    if (!s) return;
    stream_stop(s);
    smp_free(s->pending.pcm);
    smp_free(s);
}

int audio_stream_open(const void *data, size_t len, double max_seconds, audio_stream **out, char *err,
                      size_t errlen) {
    *out = NULL;
    if (errlen) err[0] = '\0';
    if (!data || len == 0) {
        snprintf(err, errlen, "the audio is empty (0 bytes)");
        return -SMP_E_BAD_REQUEST;
    }
    pthread_once(&av_once, av_setup);
    audio_stream *s = smp_calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory while decoding audio");
        return -SMP_E_NOMEM;
    }
    s->mr = (mem_reader){data, len, 0};
    s->max_seconds = max_seconds > 0 ? max_seconds : 0;
    if (max_seconds > 0) s->max_n = (size_t)(max_seconds * AUDIO_RATE) + 1;
    s->cur_fmt = -1;
    int rc = stream_start(s, err, errlen);
    if (rc) {
        if (rc == -SMP_E_NOMEM && errlen && !err[0]) snprintf(err, errlen, "out of memory while decoding audio");
        audio_stream_close(s);
        return rc;
    }
    *out = s;
    return 0;
}

int audio_stream_rewind(audio_stream *s, char *err, size_t errlen) {
    if (errlen) err[0] = '\0';
    stream_stop(s);
    int rc = stream_start(s, err, errlen);
    if (rc == -SMP_E_NOMEM && errlen && !err[0]) snprintf(err, errlen, "out of memory while decoding audio");
    return rc;
}

double audio_stream_declared_seconds(const audio_stream *s) { return s->declared; }

/* The end: what the resampler still holds goes to s->pending. */
static int finish(audio_stream *s, char *err, size_t errlen) {
    s->done = true;
    if (s->bad_packets) log_debug("audio: %d undecodable packets skipped", s->bad_packets);
    return s->swr ? resample(s, NULL, err, errlen) : 0;
}

/* Decode until s->pending holds samples or the stream is done. A packet's
 * frames are all received before the next packet is read; undecodable
 * packets and frames are skipped, up to AUDIO_MAX_BAD_PACKETS, after which
 * the stream ends there (what was decoded is kept, as at the end of a
 * truncated file). */
static int pump(audio_stream *s, char *err, size_t errlen) {
    s->pending.n = s->pos = 0;
    while (s->pending.n == 0 && !s->done) {
        int ret;
        if (!s->in_frames) {
            if (s->input_eof) return finish(s, err, errlen);
            ret = av_read_frame(s->fmt, s->pkt);
            if (ret < 0) {
                s->input_eof = true; /* end of data, or a container broken from here on */
                ret = avcodec_send_packet(s->dec, NULL);
            } else if (s->pkt->stream_index != s->si) {
                av_packet_unref(s->pkt);
                continue;
            } else {
                ret = avcodec_send_packet(s->dec, s->pkt);
                av_packet_unref(s->pkt);
            }
            if (ret < 0 && ret != AVERROR(EAGAIN) && ret != AVERROR_EOF) {
                if (++s->bad_packets > AUDIO_MAX_BAD_PACKETS) return finish(s, err, errlen);
                continue;
            }
            s->in_frames = true;
        }
        ret = avcodec_receive_frame(s->dec, s->frame);
        if (ret == AVERROR(EAGAIN) || ret == AVERROR_EOF) {
            s->in_frames = false;
            continue;
        }
        if (ret < 0) {
            if (++s->bad_packets > AUDIO_MAX_BAD_PACKETS) return finish(s, err, errlen);
            continue;
        }
        int c = setup_swr(s, s->frame);
        if (c < 0) {
            snprintf(err, errlen, "the %s stream has an unsupported shape (%d Hz, %d channels)", s->codec_name,
                     s->frame->sample_rate, s->frame->ch_layout.nb_channels);
            av_frame_unref(s->frame);
            return -SMP_E_FORMAT;
        }
        c = resample(s, s->frame, err, errlen);
        av_frame_unref(s->frame);
        if (c) return c;
    }
    return 0;
}

int audio_stream_read(audio_stream *s, float *dst, size_t cap, size_t *got, char *err, size_t errlen) {
    *got = 0;
    if (errlen) err[0] = '\0';
    while (s->pos == s->pending.n) {
        if (s->done) {
            if (s->total > 0) return 0;
            snprintf(err, errlen, "no audio could be decoded from the %s data (%s stream%s)", s->format_name,
                     s->codec_name, s->bad_packets ? " is corrupt" : " is empty or truncated");
            return -SMP_E_FORMAT;
        }
        int rc = pump(s, err, errlen);
        if (rc) {
            if (rc == -SMP_E_NOMEM && errlen && !err[0]) snprintf(err, errlen, "out of memory while decoding audio");
            return rc;
        }
    }
    size_t n = s->pending.n - s->pos < cap ? s->pending.n - s->pos : cap;
    memcpy(dst, s->pending.pcm + s->pos, n * sizeof *dst);
    s->pos += n;
    *got = n;
    return 0;
}

int audio_decode(const void *data, size_t len, double max_seconds, float **pcm, size_t *n, char *err,
                 size_t errlen) {
    *pcm = NULL;
    *n = 0;
    audio_stream *s;
    int rc = audio_stream_open(data, len, max_seconds, &s, err, errlen);
    if (rc) return rc;
    pcm_out o = {0};
    double declared = s->declared;
    if (declared > 0) { /* reserve the declared length (+ 1 s), bounded by the input size */
        double want = (declared + 1) * AUDIO_RATE, bound = (double)len * 64;
        if (want > bound) want = bound;
        if (s->max_n && want > (double)(s->max_n + 1)) want = (double)(s->max_n + 1);
        if ((rc = pcm_set_cap(&o, (size_t)want))) goto fail;
    }
    for (;;) {
        if (o.n == o.cap && (rc = pcm_reserve(&o, 1))) goto fail;
        size_t got;
        if ((rc = audio_stream_read(s, o.pcm + o.n, o.cap - o.n, &got, err, errlen))) goto fail;
        if (got == 0) break;
        o.n += got;
    }
    if (o.cap > o.n && (rc = pcm_set_cap(&o, o.n))) goto fail; /* give back the unused tail */
    *pcm = o.pcm;
    *n = o.n;
    o.pcm = NULL;
fail:
    if (rc == -SMP_E_NOMEM && errlen && !err[0]) snprintf(err, errlen, "out of memory while decoding audio");
    smp_free(o.pcm);
    audio_stream_close(s);
    return rc;
}

/* ---- container guess from the bytes ---------------------------------------------------- */

static const struct {
    const char *ext, *type;
} containers[] = {
    {"wav", "audio/wav"},   {"mp3", "audio/mpeg"}, {"m4a", "audio/mp4"},
    {"flac", "audio/flac"}, {"ogg", "audio/ogg"},  {"webm", "audio/webm"},
};

/* MIME types (data: URLs, upload parts) -> containers index. */
static int container_from_mime(const char *mime) {
    static const struct {
        const char *mime;
        int idx;
    } m[] = {
        {"audio/wav", 0},   {"audio/x-wav", 0},  {"audio/wave", 0},      {"audio/vnd.wave", 0}, {"audio/mpeg", 1},
        {"audio/mp3", 1},   {"audio/mpga", 1},   {"audio/mp4", 2},       {"audio/m4a", 2},      {"audio/x-m4a", 2},
        {"audio/aac", 2},   {"audio/flac", 3},   {"audio/x-flac", 3},    {"audio/ogg", 4},      {"audio/opus", 4},
        {"application/ogg", 4}, {"audio/webm", 5}, {"video/webm", 5},
    };
    if (!mime) return -1;
    size_t l = strcspn(mime, "; ");
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (strlen(m[i].mime) == l && !strncasecmp(mime, m[i].mime, l)) return m[i].idx;
    return -1;
}

const char *audio_guess_container(const void *data, size_t len, const char *mime, const char **content_type) {
    const unsigned char *b = data;
    int k = -1;
    if (len >= 12 && !memcmp(b, "RIFF", 4) && !memcmp(b + 8, "WAVE", 4)) k = 0;
    else if (len >= 3 && !memcmp(b, "ID3", 3)) k = 1;
    else if (len >= 2 && b[0] == 0xFF && (b[1] & 0xE6) == 0xE2) k = 1; /* MPEG audio frame sync, layer III */
    else if (len >= 8 && !memcmp(b + 4, "ftyp", 4)) k = 2;
    else if (len >= 4 && !memcmp(b, "fLaC", 4)) k = 3;
    else if (len >= 4 && !memcmp(b, "OggS", 4)) k = 4;
    else if (len >= 4 && b[0] == 0x1A && b[1] == 0x45 && b[2] == 0xDF && b[3] == 0xA3) k = 5; /* EBML */
    if (k < 0) k = container_from_mime(mime);
    if (content_type) *content_type = k >= 0 ? containers[k].type : NULL;
    return k >= 0 ? containers[k].ext : NULL;
}
