/* test_multipart.c - the multipart/form-data parser: fields, files, quoting,
 * empty parts, and the malformed bodies it must refuse. */
#include <string.h>

#include "core/errors.h"
#include "http/multipart.h"
#include "test.h"

#define CT "multipart/form-data; boundary=XyZ"

TEST(multipart_fields_and_file) {
    const char body[] = "--XyZ\r\n"
                        "Content-Disposition: form-data; name=\"file\"; filename=\"notes.md\"\r\n"
                        "Content-Type: text/markdown\r\n"
                        "\r\n"
                        "# Title\r\n\r\nbody with --XyZ inside a line\r\n"
                        "--XyZ\r\n"
                        "content-disposition: form-data; name=collection\r\n"
                        "\r\n"
                        "docs\r\n"
                        "--XyZ--\r\n";
    multipart m;
    char err[256];
    REQUIRE(multipart_parse(CT, body, sizeof body - 1, &m, err, sizeof err) == 0);
    REQUIRE(m.n == 2);
    const multipart_part *f = multipart_find(&m, "file");
    REQUIRE(f != NULL);
    CHECK_STR(f->filename, "notes.md");
    CHECK_STR(f->content_type, "text/markdown");
    const char want[] = "# Title\r\n\r\nbody with --XyZ inside a line";
    CHECK_INT(f->len, sizeof want - 1);
    CHECK(!memcmp(f->data, want, f->len));
    const multipart_part *c = multipart_find(&m, "collection");
    REQUIRE(c != NULL);
    CHECK(c->filename == NULL);
    CHECK_INT(c->len, 4);
    CHECK(!memcmp(c->data, "docs", 4));
    CHECK(multipart_find(&m, "missing") == NULL);
    multipart_free(&m);
}

TEST(multipart_quoting_preamble_and_empty) {
    const char body[] = "ignored preamble\r\n"
                        "--a b \t\r\n"
                        "Content-Disposition: form-data; filename=\"we\\\"ird;name.txt\"; name=\"f\"\r\n"
                        "\r\n"
                        "\r\n"
                        "--a b\r\n"
                        "Content-Disposition: form-data; name=\"e\"\r\n"
                        "\r\n"
                        "\r\n--a b--";
    multipart m;
    char err[256];
    REQUIRE(multipart_parse("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b\"", body, sizeof body - 1, &m, err,
                            sizeof err) == 0);
    REQUIRE(m.n == 2);
    CHECK_STR(m.parts[0].filename, "we\"ird;name.txt");
    CHECK_INT(m.parts[0].len, 0);
    CHECK_INT(m.parts[1].len, 0);
    multipart_free(&m);
}

static int parse_rc(const char *ct, const char *body) {
    multipart m;
    char err[256];
    int rc = multipart_parse(ct, body, strlen(body), &m, err, sizeof err);
    if (rc == 0) multipart_free(&m);
    else CHECK(m.n == 0 && m.parts == NULL && err[0]);
    return rc;
}

TEST(multipart_refuses_malformed) {
    CHECK_INT(parse_rc("application/json", "{}"), -SMP_E_UNSUPPORTED_MEDIA);
    CHECK_INT(parse_rc(NULL, ""), -SMP_E_UNSUPPORTED_MEDIA);
    CHECK_INT(parse_rc("multipart/form-data", "--\r\n"), -SMP_E_UNSUPPORTED_MEDIA);
    CHECK_INT(parse_rc("multipart/form-data; boundary=", "--\r\n"), -SMP_E_UNSUPPORTED_MEDIA);
    /* 71-character boundary */
    CHECK_INT(parse_rc("multipart/form-data; boundary="
                       "12345678901234567890123456789012345678901234567890123456789012345678901",
                       ""),
              -SMP_E_UNSUPPORTED_MEDIA);
    CHECK_INT(parse_rc(CT, ""), -SMP_E_FORMAT);
    CHECK_INT(parse_rc(CT, "no boundary at all"), -SMP_E_FORMAT);
    /* No closing boundary. */
    CHECK_INT(parse_rc(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue"), -SMP_E_FORMAT);
    /* No Content-Disposition / not form-data / no name. */
    CHECK_INT(parse_rc(CT, "--XyZ\r\nContent-Type: text/plain\r\n\r\nx\r\n--XyZ--"), -SMP_E_FORMAT);
    CHECK_INT(parse_rc(CT, "--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ--"), -SMP_E_FORMAT);
    CHECK_INT(parse_rc(CT, "--XyZ\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--XyZ--"),
              -SMP_E_FORMAT);
    /* Unterminated quote, folded header, LF-only line ends. */
    CHECK_INT(parse_rc(CT, "--XyZ\r\nContent-Disposition: form-data; name=\"a\r\n\r\nx\r\n--XyZ--"), -SMP_E_FORMAT);
    CHECK_INT(parse_rc(CT, "--XyZ\r\n Content-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ--"), -SMP_E_FORMAT);
    CHECK_INT(parse_rc(CT, "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nx\n--XyZ--"), -SMP_E_FORMAT);
    /* Garbage after a boundary. */
    CHECK_INT(parse_rc(CT, "--XyZjunk\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XyZ--"),
              -SMP_E_FORMAT);
}
