/* test_doctext.c - HTML to text (white space, blocks, entities, skipped
 * elements, <pre>) and the PDF path's refusals that need no pdftotext. */
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "media/doctext.h"
#include "test.h"

static void html_is(const char *html, const char *want) {
    char *out;
    size_t n;
    REQUIRE(doctext_html(html, strlen(html), &out, &n) == 0);
    CHECK_INT(n, strlen(out));
    CHECK_STR(out, want);
    smp_free(out);
}

TEST(doctext_html_strips_markup) {
    html_is("<p>Hello   <b>bold</b>\n world</p><p>Second</p>", "Hello bold world\n\nSecond");
    html_is("<ul><li>one</li><li>two</li></ul>tail", "one\ntwo\n\ntail");
    html_is("a<br>b<br/>c", "a\nb\nc");
    html_is("<script>if (a < b) { x = '</p>'; }</script><style>p{}</style>text", "text");
    html_is("<!-- <p>hidden</p> -->shown<!-- unterminated", "shown");
    html_is("&lt;tag&gt; &amp; &quot;q&quot; &#233;&#x20AC; &nbsp;x &bogus; &#;", "<tag> & \"q\" é€ x &bogus; &#;");
    html_is("<pre>  line 1\n    line 2</pre>after", "  line 1\n    line 2\n\nafter");
    html_is("<a href=\"x > y\" title='>'>link</a> 1 < 2", "link 1 < 2");
    html_is("\xEF\xBB\xBF<title>T</title><body><h1>H</h1>x</body>", "T\n\nH\n\nx");
    html_is("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\nc");
    html_is("<![CDATA[x < y]]>", "x < y");
    html_is("", "");
    html_is("   <p> </p>  ", "");
}

TEST(doctext_pdf_refuses_non_pdf) {
    char *out;
    size_t n;
    char err[256];
    CHECK_INT(doctext_pdf("hello", 5, 1000, 1 << 20, &out, &n, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "%PDF") != NULL);
    CHECK(out == NULL);
}

TEST(doctext_pdf_garbage_is_format_error) {
    if (!doctext_pdf_available()) SKIP("pdftotext not installed (poppler-utils)");
    char garbage[2048] = "%PDF-1.7\n";
    for (size_t i = 9; i < sizeof garbage; i++) garbage[i] = (char)(i * 7919 + 13);
    char *out;
    size_t n;
    char err[256];
    CHECK_INT(doctext_pdf(garbage, sizeof garbage, 10000, 1 << 20, &out, &n, err, sizeof err), -SMP_E_FORMAT);
    CHECK(strstr(err, "Invalid PDF") != NULL);
}
