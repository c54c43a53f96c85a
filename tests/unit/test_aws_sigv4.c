/* test_aws_sigv4.c - unit tests of the SigV4 signer (src/aws_sigv4.c).
 *
 * Three groups:
 *  - AWS's published sig-v4 test suite (credentials AKIDEXAMPLE, us-east-1, service "service",
 *    20150830T123600Z), transcribed below as a table: request, expected canonical request
 *    (where handy), hash of the canonical request from the expected string to sign, signed
 *    headers and signature. Cases named "*-crt" are from the revision of the suite that AWS
 *    ships with its CRT signer (aws-c-auth), where the original suite was ambiguous.
 *  - Vectors computed by botocore for Kinesis requests: tests/data/sigv4_botocore.txt,
 *    written by tests/gen_sigv4_vectors.py; the Authorization header must match byte for byte.
 *  - Edge cases of the API: signer-owned headers, argument checks, bounds, encoding details.
 * Threading: single-threaded test program.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kinesis2pg/aws_sigv4.h"

#ifndef K2P_TEST_DATA
#define K2P_TEST_DATA "tests/data"
#endif

/* ------------------------------------------------------------------------------------------ */
/* AWS's published test suite                                                                 */
/* ------------------------------------------------------------------------------------------ */

#define SUITE_AKID "AKIDEXAMPLE"
#define SUITE_SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_TIME ((time_t)1440938160) /* 2015-08-30T12:36:00Z */
#define SUITE_STS_PREFIX                                                                           \
    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
#define SUITE_AUTH_PREFIX                                                                          \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "            \
    "SignedHeaders="
#define SUITE_STS_TOKEN                                                                            \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxf"    \
    "pSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KP"     \
    "kyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbq"     \
    "BAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="
#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define FORM_SHA256 "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"

/* clang-format off */
#define HOST {"Host", "example.amazonaws.com"}
/* clang-format on */
#define MAX_HDRS 6

typedef struct suite_case {
    const char *name;
    const char *method;
    const char *path;                  /* as in the suite's request line */
    const char *query;                 /* NULL when the request line has none */
    k2p_http_header headers[MAX_HDRS]; /* ends at the first NULL name */
    const char *body;
    const char *token;          /* session token, or NULL */
    const char *creq;           /* expected canonical request, or NULL when not spelled out */
    const char *creq_hash;      /* last line of the expected string to sign */
    const char *signed_headers; /* expected SignedHeaders */
    const char *signature;      /* expected signature */
} suite_case;

/* Canonical request of a suite request with only Host and X-Amz-Date. */
#define CREQ_PLAIN(method, uri, query)                                                             \
    method "\n" uri "\n" query "\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"     \
           "host;x-amz-date\n" EMPTY_SHA256

/* clang-format off */
static const suite_case suite_cases[] = {
    {"get-vanilla", "GET", "/", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    /* The published get-vanilla-query request has no query string at all. */
    {"get-vanilla-query", "GET", "/", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/", "Param1=value1"),
     "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab", "host;x-amz-date",
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"},
    {"get-vanilla-query-order-key", "GET", "/", "Param1=value2&Param1=Value1", {HOST}, NULL,
     NULL, CREQ_PLAIN("GET", "/", "Param1=Value1&Param1=value2"),
     "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89", "host;x-amz-date",
     "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1"},
    {"get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {HOST},
     NULL, NULL, CREQ_PLAIN("GET", "/", "Param1=value1&Param2=value2"),
     "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0", "host;x-amz-date",
     "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"},
    {"get-vanilla-query-order-value", "GET", "/", "Param1=value2&Param1=value1", {HOST}, NULL,
     NULL, CREQ_PLAIN("GET", "/", "Param1=value1&Param1=value2"),
     "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606", "host;x-amz-date",
     "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694"},
    {"get-vanilla-query-unreserved", "GET", "/",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
     {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/",
                "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
                "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
     "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177", "host;x-amz-date",
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"},
    {"get-vanilla-utf8-query", "GET", "/", "\xe1\x88\xb4=bar", {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/", "%E1%88%B4=bar"),
     "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073", "host;x-amz-date",
     "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"},
    {"get-vanilla-query-order-encoded-crt", "GET", "/",
     "Param-3=Value3&Param=Value2&%E1%88%B4=Value1", {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/", "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"),
     "868294f5c38bd141c4972a373a76654f1418a8e4fc18b2e7903ae45e8ae0ec71", "host;x-amz-date",
     "371d3713e185cc334048618a97f809c9ffe339c62934c032af5a0e595648fcac"},
    {"get-header-key-duplicate", "GET", "/", NULL,
     {HOST, {"My-Header1", "value2"}, {"My-Header1", "value2"}, {"My-Header1", "value1"}}, NULL,
     NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\n"
     "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA256,
     "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
     "host;my-header1;x-amz-date",
     "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea"},
    {"get-header-value-order", "GET", "/", NULL,
     {HOST,
      {"My-Header1", "value4"},
      {"My-Header1", "value1"},
      {"My-Header1", "value3"},
      {"My-Header1", "value2"}},
     NULL, NULL, NULL, "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
     "host;my-header1;x-amz-date",
     "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01"},
    {"get-header-value-trim", "GET", "/", NULL,
     {HOST, {"My-Header1", " value1"}, {"My-Header2", " \"a   b   c\""}}, NULL, NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\n"
     "x-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\n" EMPTY_SHA256,
     "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
     "host;my-header1;my-header2;x-amz-date",
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"},
    /* The original suite joined folded lines with ','; the CRT revision (and botocore) fold
     * them into spaces, as "sequential spaces are converted to one" says. */
    {"get-header-value-multiline-crt", "GET", "/", NULL,
     {HOST, {"My-Header1", "value1\n  value2\n     value3"}}, NULL, NULL,
     "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1 value2 value3\n"
     "x-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\n" EMPTY_SHA256,
     "e99419459a677bc11de234014be3c4e72c1ea5b454ceb58b613061f5d7a162e8",
     "host;my-header1;x-amz-date",
     "cfd34249e4b1c8d6b91ef74165d41a32e5fab3306300901bb65a51a73575eefd"},
    {"get-unreserved", "GET",
     "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", NULL, {HOST}, NULL,
     NULL,
     CREQ_PLAIN("GET", "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", ""),
     "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9", "host;x-amz-date",
     "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f"},
    {"get-utf8", "GET", "/\xe1\x88\xb4", NULL, {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/%E1%88%B4", ""),
     "2a0a97d02205e45ce2e994789806b19270cfbbb0921b278ccf58f5249ac42102", "host;x-amz-date",
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"},
    {"get-space", "GET", "/example space/", NULL, {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/example%20space/", ""),
     "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86", "host;x-amz-date",
     "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741"},
    {"get-slash", "GET", "//", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slashes", "GET", "//example//", NULL, {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/example/", ""),
     "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015", "host;x-amz-date",
     "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84"},
    {"get-slash-dot-slash", "GET", "/./", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-slash-pointless-dot", "GET", "/./example", NULL, {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/example", ""),
     "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702", "host;x-amz-date",
     "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5"},
    {"get-relative", "GET", "/example/..", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"get-relative-relative", "GET", "/example1/example2/../..", NULL, {HOST}, NULL, NULL,
     CREQ_PLAIN("GET", "/", ""),
     "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63", "host;x-amz-date",
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
    {"post-vanilla", "POST", "/", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("POST", "/", ""),
     "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-vanilla-query", "POST", "/", "Param1=value1", {HOST}, NULL, NULL,
     CREQ_PLAIN("POST", "/", "Param1=value1"),
     "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd", "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-vanilla-empty-query-value", "POST", "/", "Param1=value1", {HOST}, NULL, NULL,
     CREQ_PLAIN("POST", "/", "Param1=value1"),
     "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd", "host;x-amz-date",
     "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11"},
    {"post-header-key-case", "POST", "/", NULL, {{"HOST", "example.amazonaws.com"}}, NULL, NULL,
     CREQ_PLAIN("POST", "/", ""),
     "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"post-header-key-sort", "POST", "/", NULL, {{"My-Header1", "value1"}, HOST}, NULL, NULL,
     "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\n"
     "host;my-header1;x-amz-date\n" EMPTY_SHA256,
     "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
     "host;my-header1;x-amz-date",
     "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c"},
    {"post-header-value-case", "POST", "/", NULL, {HOST, {"My-Header1", "VALUE1"}}, NULL, NULL,
     "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\n"
     "host;my-header1;x-amz-date\n" EMPTY_SHA256,
     "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
     "host;my-header1;x-amz-date",
     "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"},
    {"post-x-www-form-urlencoded", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded"}, HOST}, "Param1=value1", NULL,
     "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\n"
     "x-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n" FORM_SHA256,
     "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
     "content-type;host;x-amz-date",
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"},
    {"post-x-www-form-urlencoded-parameters", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded; charset=utf8"}, HOST},
     "Param1=value1", NULL,
     "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\n"
     "host:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n"
     FORM_SHA256,
     "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
     "content-type;host;x-amz-date",
     "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"},
    /* The CRT revision adds Content-Length and X-Amz-Content-SHA256 (signed like any header). */
    {"post-x-www-form-urlencoded-crt", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded"},
      HOST,
      {"Content-Length", "13"},
      {"X-Amz-Content-SHA256", FORM_SHA256}},
     "Param1=value1", NULL, NULL, "b1edd1d03544c25390e32085d55b57acc9a3961bb59415ff86c45c3d89d16cfb",
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
     "d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b"},
    {"post-x-www-form-urlencoded-parameters-crt", "POST", "/", NULL,
     {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"},
      HOST,
      {"Content-Length", "13"},
      {"X-Amz-Content-SHA256", FORM_SHA256}},
     "Param1=value1", NULL, NULL, "a89f1a5b53e37702ee6363ce1da3ce8f54386f3c8f352ae652153c2982a0bc4d",
     "content-length;content-type;host;x-amz-content-sha256;x-amz-date",
     "328d1b9eaadca9f5818ef05e8392801e091653bafec24fcab71e7344e7f51422"},
    /* Session token signed (the suite's "header before" variant; "after" is post-vanilla). */
    {"post-sts-header-before", "POST", "/", NULL, {HOST}, NULL, SUITE_STS_TOKEN,
     "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
     "x-amz-security-token:" SUITE_STS_TOKEN "\n\nhost;x-amz-date;x-amz-security-token\n"
     EMPTY_SHA256,
     "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
     "host;x-amz-date;x-amz-security-token",
     "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead"},
    {"post-sts-header-after", "POST", "/", NULL, {HOST}, NULL, NULL, CREQ_PLAIN("POST", "/", ""),
     "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87", "host;x-amz-date",
     "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
    {"get-vanilla-with-session-token-crt", "GET", "/", NULL, {HOST}, NULL,
     "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267",
     "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n"
     "x-amz-security-token:6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267\n\n"
     "host;x-amz-date;x-amz-security-token\n" EMPTY_SHA256,
     "067b36aa60031588cea4a4cde1f21215227a047690c72247f1d70b32fbbfad2b",
     "host;x-amz-date;x-amz-security-token",
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"},
};
/* clang-format on */

static size_t count_headers(const k2p_http_header *h)
{
    size_t n = 0;
    while (n < MAX_HDRS && h[n].name)
        n++;
    return n;
}

static void test_suite_case(void **state)
{
    const suite_case *c = *state;
    k2p_sigv4_request req = {
        .method = c->method,
        .path = c->path,
        .query = c->query,
        .headers = c->headers,
        .n_headers = count_headers(c->headers),
        .body = c->body,
        .body_len = c->body ? strlen(c->body) : 0,
    };
    k2p_sigv4_creds creds = {SUITE_AKID, SUITE_SECRET, c->token};
    k2p_sigv4_out out;
    k2p_err err = {0};
    char expect[1024];

    assert_int_equal(k2p_sigv4_sign(&req, &creds, "us-east-1", "service", SUITE_TIME, &out, &err),
                     0);
    assert_string_equal(out.amz_date, "20150830T123600Z");
    if (c->creq)
        assert_string_equal(out.canonical_request, c->creq);
    snprintf(expect, sizeof expect, "%s%s", SUITE_STS_PREFIX, c->creq_hash);
    assert_string_equal(out.string_to_sign, expect);
    assert_string_equal(out.signature, c->signature);
    snprintf(expect, sizeof expect, "%s%s, Signature=%s", SUITE_AUTH_PREFIX, c->signed_headers,
             c->signature);
    assert_string_equal(out.authorization, expect);
    k2p_sigv4_out_deinit(&out);
}

/* ------------------------------------------------------------------------------------------ */
/* botocore vectors                                                                           */
/* ------------------------------------------------------------------------------------------ */

#define BOTO_MAX_HDRS 16

typedef struct boto_case {
    char *name;
    long long time;
    char *region, *service, *akid, *secret, *token;
    char *method, *path, *query;
    k2p_http_header headers[BOTO_MAX_HDRS];
    char *header_lines[BOTO_MAX_HDRS]; /* storage behind headers[] */
    size_t n_headers;
    char *body;
    size_t body_len;
    char *creq, *sts, *amzdate, *authorization;
} boto_case;

typedef struct boto_file {
    boto_case *cases;
    size_t n;
    char error[256]; /* why the file could not be read, or "" */
} boto_file;

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    assert_non_null(p);
    memcpy(p, s, n + 1);
    return p;
}

static int hexdig(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes the generator's escapes (\\, \n, \xHH) into a new heap string; -1 len on error. */
static char *unescape(const char *s, size_t *len)
{
    size_t n = strlen(s), o = 0;
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\\') {
            p[o++] = s[i];
        } else if (s[i + 1] == '\\') {
            p[o++] = '\\';
            i++;
        } else if (s[i + 1] == 'n') {
            p[o++] = '\n';
            i++;
        } else if (s[i + 1] == 'x' && hexdig(s[i + 2]) >= 0 && hexdig(s[i + 3]) >= 0) {
            p[o++] = (char)(hexdig(s[i + 2]) << 4 | hexdig(s[i + 3]));
            i += 3;
        } else {
            free(p);
            return NULL;
        }
    }
    p[o] = '\0';
    *len = o;
    return p;
}

static void boto_case_free(boto_case *c)
{
    free(c->name);
    free(c->region);
    free(c->service);
    free(c->akid);
    free(c->secret);
    free(c->token);
    free(c->method);
    free(c->path);
    free(c->query);
    for (size_t i = 0; i < c->n_headers; i++)
        free(c->header_lines[i]);
    free(c->body);
    free(c->creq);
    free(c->sts);
    free(c->amzdate);
    free(c->authorization);
}

/* Sets *field to a copy of val; fails on a repeated key within a case. */
static int set_field(char **field, const char *val)
{
    if (*field)
        return -1;
    *field = xstrdup(val);
    return 0;
}

static int boto_parse_line(boto_case *c, const char *key, const char *val)
{
    size_t len;
    if (!strcmp(key, "time")) {
        char *end;
        c->time = strtoll(val, &end, 10);
        return *end ? -1 : 0;
    }
    if (!strcmp(key, "region"))
        return set_field(&c->region, val);
    if (!strcmp(key, "service"))
        return set_field(&c->service, val);
    if (!strcmp(key, "akid"))
        return set_field(&c->akid, val);
    if (!strcmp(key, "secret"))
        return set_field(&c->secret, val);
    if (!strcmp(key, "token"))
        return set_field(&c->token, val);
    if (!strcmp(key, "method"))
        return set_field(&c->method, val);
    if (!strcmp(key, "path"))
        return set_field(&c->path, val);
    if (!strcmp(key, "query"))
        return set_field(&c->query, val);
    if (!strcmp(key, "amzdate"))
        return set_field(&c->amzdate, val);
    if (!strcmp(key, "authorization"))
        return set_field(&c->authorization, val);
    if (!strcmp(key, "header")) {
        char *line, *colon;
        if (c->n_headers == BOTO_MAX_HDRS)
            return -1;
        line = xstrdup(val);
        colon = strchr(line, ':');
        if (!colon) {
            free(line);
            return -1;
        }
        *colon = '\0';
        c->header_lines[c->n_headers] = line;
        c->headers[c->n_headers].name = line;
        c->headers[c->n_headers].value = colon + 1;
        c->n_headers++;
        return 0;
    }
    if (!strcmp(key, "body") || !strcmp(key, "creq") || !strcmp(key, "sts")) {
        char **field = key[0] == 'b' ? &c->body : key[0] == 'c' ? &c->creq : &c->sts;
        if (*field || !(*field = unescape(val, &len)))
            return -1;
        if (key[0] == 'b')
            c->body_len = len;
        return 0;
    }
    return -1;
}

static void boto_load(boto_file *f)
{
    static const char path[] = K2P_TEST_DATA "/sigv4_botocore.txt";
    FILE *fp = fopen(path, "r");
    char line[8192];
    boto_case *cur = NULL;
    unsigned lineno = 0;

    memset(f, 0, sizeof *f);
    if (!fp) {
        snprintf(f->error, sizeof f->error, "cannot open %s", path);
        return;
    }
    while (fgets(line, sizeof line, fp)) {
        size_t n = strlen(line);
        char *sp;
        lineno++;
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            snprintf(f->error, sizeof f->error, "line %u too long", lineno);
            break;
        }
        if (n && line[n - 1] == '\n')
            line[--n] = '\0';
        if (n == 0 || line[0] == '#')
            continue;
        sp = strchr(line, ' ');
        if (sp)
            *sp = '\0';
        if (!strcmp(line, "case")) {
            boto_case *grown;
            if (cur || !sp) {
                snprintf(f->error, sizeof f->error, "line %u: unexpected case", lineno);
                break;
            }
            grown = realloc(f->cases, (f->n + 1) * sizeof *f->cases);
            assert_non_null(grown);
            f->cases = grown;
            cur = &f->cases[f->n++];
            memset(cur, 0, sizeof *cur);
            cur->name = malloc(strlen(sp + 1) + sizeof "botocore/");
            assert_non_null(cur->name);
            memcpy(cur->name, "botocore/", sizeof "botocore/" - 1);
            memcpy(cur->name + sizeof "botocore/" - 1, sp + 1, strlen(sp + 1) + 1);
        } else if (!strcmp(line, "end")) {
            if (!cur || !cur->region || !cur->service || !cur->akid || !cur->secret ||
                !cur->method || !cur->path || !cur->creq || !cur->sts || !cur->amzdate ||
                !cur->authorization) {
                snprintf(f->error, sizeof f->error, "line %u: incomplete case", lineno);
                break;
            }
            cur = NULL;
        } else if (!cur || !sp || boto_parse_line(cur, line, sp + 1) != 0) {
            snprintf(f->error, sizeof f->error, "line %u: bad line", lineno);
            break;
        }
    }
    if (!f->error[0] && cur)
        snprintf(f->error, sizeof f->error, "case %s has no end", cur->name);
    if (!f->error[0] && f->n == 0)
        snprintf(f->error, sizeof f->error, "no cases in %s", path);
    fclose(fp);
}

static void boto_free(boto_file *f)
{
    for (size_t i = 0; i < f->n; i++)
        boto_case_free(&f->cases[i]);
    free(f->cases);
    f->cases = NULL;
    f->n = 0;
}

static void test_boto_file_loaded(void **state)
{
    const boto_file *f = *state;
    if (f->error[0])
        fail_msg("sigv4_botocore.txt: %s", f->error);
    assert_true(f->n >= 10);
}

static void test_boto_case(void **state)
{
    const boto_case *c = *state;
    k2p_sigv4_request req = {
        .method = c->method,
        .path = c->path,
        .query = c->query,
        .headers = c->headers,
        .n_headers = c->n_headers,
        .body = c->body,
        .body_len = c->body_len,
    };
    k2p_sigv4_creds creds = {c->akid, c->secret, c->token};
    k2p_sigv4_out out;
    k2p_err err = {0};
    int rc = k2p_sigv4_sign(&req, &creds, c->region, c->service, (time_t)c->time, &out, &err);

    if (rc != 0)
        fail_msg("%s: sign failed: %s", c->name, err.msg);
    assert_string_equal(out.amz_date, c->amzdate);
    assert_string_equal(out.canonical_request, c->creq);
    assert_string_equal(out.string_to_sign, c->sts);
    assert_string_equal(out.authorization, c->authorization);
    k2p_sigv4_out_deinit(&out);
}

/* ------------------------------------------------------------------------------------------ */
/* API edge cases                                                                             */
/* ------------------------------------------------------------------------------------------ */

static const k2p_http_header host_only[] = {HOST};
static const k2p_sigv4_creds suite_creds = {SUITE_AKID, SUITE_SECRET, NULL};

static int sign_simple(const char *path, const char *query, k2p_sigv4_out *out)
{
    k2p_sigv4_request req = {"GET", path, query, host_only, 1, NULL, 0};
    return k2p_sigv4_sign(&req, &suite_creds, "us-east-1", "service", SUITE_TIME, out, NULL);
}

/* Returns the second line (canonical URI) or third line (query) of the canonical request. */
static void creq_line(const k2p_sigv4_out *out, int line, char *buf, size_t cap)
{
    const char *p = out->canonical_request, *e;
    for (int i = 0; i < line; i++)
        p = strchr(p, '\n') + 1;
    e = strchr(p, '\n');
    snprintf(buf, cap, "%.*s", (int)(e - p), p);
}

static void check_uri(const char *path, const char *want)
{
    k2p_sigv4_out out;
    char got[512];
    assert_int_equal(sign_simple(path, NULL, &out), 0);
    creq_line(&out, 1, got, sizeof got);
    assert_string_equal(got, want);
    k2p_sigv4_out_deinit(&out);
}

static void check_query(const char *query, const char *want)
{
    k2p_sigv4_out out;
    char got[512];
    assert_int_equal(sign_simple("/", query, &out), 0);
    creq_line(&out, 2, got, sizeof got);
    assert_string_equal(got, want);
    k2p_sigv4_out_deinit(&out);
}

static void test_sha256_hex(void **state)
{
    char hex[65];
    (void)state;
    k2p_sha256_hex(NULL, 0, hex);
    assert_string_equal(hex, EMPTY_SHA256);
    k2p_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    k2p_sha256_hex("Param1=value1", 13, hex);
    assert_string_equal(hex, FORM_SHA256);
}

static void test_canonical_uri(void **state)
{
    (void)state;
    check_uri("", "/");
    check_uri("/", "/");
    check_uri("/a/b/../../..", "/");
    check_uri("/a/./b/", "/a/b/");
    check_uri("/a/b/.", "/a/b");
    check_uri("/a/..b/c", "/a/..b/c");
    /* A wire path is encoded again: '%' becomes "%25" (double encoding, non-S3 services). */
    check_uri("/a%20b/c%2Fd", "/a%2520b/c%252Fd");
    check_uri("/~user/x+y=z", "/~user/x%2By%3Dz");
}

static void test_canonical_query(void **state)
{
    (void)state;
    check_query("", "");
    check_query("&&b=2&&a=1&", "a=1&b=2");
    check_query("flag", "flag=");
    check_query("k=", "k=");
    check_query("=v", "=v");
    check_query("a=%e1%88%b4", "a=%E1%88%B4");
    check_query("a=x+y", "a=x%2By");
    check_query("a=%zz&b=%4", "a=%25zz&b=%254");
    check_query("a=b=c", "a=b%3Dc");
    check_query("a=%20&a=%2F&a=~", "a=%20&a=%2F&a=~");
    /* Sorted by key then value, not as "k=v" strings: "Param" < "Param-3". */
    check_query("Param-3=1&Param=2", "Param=2&Param-3=1");
    check_query("b=2&b=10&a=z", "a=z&b=10&b=2");
}

static void test_signer_owned_headers(void **state)
{
    /* A caller's X-Amz-Date, X-Amz-Security-Token and Authorization are ignored. */
    const k2p_http_header hdrs[] = {
        {"X-Amz-Date", "19990101T000000Z"},
        HOST,
        {"authorization", "AWS4-HMAC-SHA256 stale"},
        {" X-Amz-Security-Token ", "stale-token"},
    };
    k2p_sigv4_request req = {"GET", "/", NULL, hdrs, 4, NULL, 0};
    k2p_sigv4_creds creds = {SUITE_AKID, SUITE_SECRET, ""};
    k2p_sigv4_out out;
    (void)state;

    assert_int_equal(k2p_sigv4_sign(&req, &creds, "us-east-1", "service", SUITE_TIME, &out, NULL),
                     0);
    assert_string_equal(out.canonical_request, CREQ_PLAIN("GET", "/", ""));
    assert_string_equal(out.signature,
                        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
    k2p_sigv4_out_deinit(&out);

    creds.session_token = SUITE_STS_TOKEN;
    req.method = "POST";
    assert_int_equal(k2p_sigv4_sign(&req, &creds, "us-east-1", "service", SUITE_TIME, &out, NULL),
                     0);
    assert_string_equal(out.signature,
                        "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
    k2p_sigv4_out_deinit(&out);
}

static void test_times(void **state)
{
    k2p_sigv4_request req = {"GET", "/", NULL, host_only, 1, NULL, 0};
    k2p_sigv4_out out;
    (void)state;

    assert_int_equal(k2p_sigv4_sign(&req, &suite_creds, "r", "s", 0, &out, NULL), 0);
    assert_string_equal(out.amz_date, "19700101T000000Z");
    assert_non_null(strstr(out.authorization, "/19700101/r/s/aws4_request,"));
    k2p_sigv4_out_deinit(&out);

    assert_int_equal(k2p_sigv4_sign(&req, &suite_creds, "r", "s", 951868799, &out, NULL), 0);
    assert_string_equal(out.amz_date, "20000229T235959Z");
    k2p_sigv4_out_deinit(&out);

    if (sizeof(time_t) > 4) {
        assert_int_equal(
            k2p_sigv4_sign(&req, &suite_creds, "r", "s", (time_t)4102444800LL, &out, NULL), 0);
        assert_string_equal(out.amz_date, "21000101T000000Z");
        k2p_sigv4_out_deinit(&out);
        /* Year 10000 does not fit X-Amz-Date. */
        assert_int_equal(
            k2p_sigv4_sign(&req, &suite_creds, "r", "s", (time_t)253402300800LL, &out, NULL),
            K2P_EINVAL);
    }
}

static void test_deterministic_and_reusable(void **state)
{
    k2p_sigv4_out a, b;
    (void)state;
    assert_int_equal(sign_simple("/x", "a=1", &a), 0);
    assert_int_equal(sign_simple("/x", "a=1", &b), 0);
    assert_string_equal(a.authorization, b.authorization);
    assert_string_equal(a.canonical_request, b.canonical_request);
    k2p_sigv4_out_deinit(&a);
    k2p_sigv4_out_deinit(&a); /* idempotent */
    assert_null(a.canonical_request);
    assert_null(a.string_to_sign);
    k2p_sigv4_out_deinit(&b);
    k2p_sigv4_out_deinit(NULL);
}

static void expect_einval(const k2p_sigv4_request *req, const k2p_sigv4_creds *creds,
                          const char *region, const char *service)
{
    k2p_sigv4_out out;
    k2p_err err = {0};
    memset(&out, 0xA5, sizeof out);
    assert_int_equal(k2p_sigv4_sign(req, creds, region, service, SUITE_TIME, &out, &err),
                     K2P_EINVAL);
    assert_int_equal(err.code, K2P_EINVAL);
    assert_true(err.msg[0] != '\0');
    /* On failure `out` holds nothing to free and no partial signature. */
    assert_null(out.canonical_request);
    assert_null(out.string_to_sign);
    assert_string_equal(out.authorization, "");
    k2p_sigv4_out_deinit(&out);
}

static void test_invalid_arguments(void **state)
{
    const k2p_http_header no_host[] = {{"Content-Type", "x"}};
    const k2p_http_header empty_name[] = {HOST, {"  ", "x"}};
    const k2p_http_header null_name[] = {HOST, {NULL, "x"}};
    k2p_sigv4_request ok = {"GET", "/", NULL, host_only, 1, NULL, 0};
    k2p_sigv4_request r;
    k2p_sigv4_creds c;
    (void)state;

    expect_einval(NULL, &suite_creds, "us-east-1", "service");
    r = ok, r.method = NULL;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.method = "";
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.path = NULL;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.headers = no_host;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.n_headers = 0;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.headers = NULL;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.headers = empty_name, r.n_headers = 2;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.headers = null_name, r.n_headers = 2;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    r = ok, r.body_len = 3;
    expect_einval(&r, &suite_creds, "us-east-1", "service");
    expect_einval(&ok, NULL, "us-east-1", "service");
    c = suite_creds, c.access_key_id = "";
    expect_einval(&ok, &c, "us-east-1", "service");
    c = suite_creds, c.secret_access_key = NULL;
    expect_einval(&ok, &c, "us-east-1", "service");
    expect_einval(&ok, &suite_creds, NULL, "service");
    expect_einval(&ok, &suite_creds, "us-east-1", "");
    assert_int_equal(
        k2p_sigv4_sign(&ok, &suite_creds, "us-east-1", "service", SUITE_TIME, NULL, NULL),
        K2P_EINVAL);
}

static void test_bounds(void **state)
{
    k2p_sigv4_request req = {"GET", "/", NULL, host_only, 1, NULL, 0};
    k2p_sigv4_creds c = suite_creds;
    k2p_sigv4_out out;
    k2p_err err = {0};
    char big[700];
    (void)state;

    /* An Authorization header longer than out->authorization is refused, not truncated. */
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    c.access_key_id = big;
    assert_int_equal(k2p_sigv4_sign(&req, &c, "us-east-1", "service", SUITE_TIME, &out, &err),
                     K2P_ENOMEM);
    assert_null(out.canonical_request);
    /* The message never carries the key id or anything secret. */
    assert_null(strstr(err.msg, "AAAA"));

    c = suite_creds;
    c.secret_access_key = big;
    assert_int_equal(k2p_sigv4_sign(&req, &c, "us-east-1", "service", SUITE_TIME, &out, &err),
                     K2P_EINVAL);
    assert_null(strstr(err.msg, "AAAA"));
}

/* ------------------------------------------------------------------------------------------ */

int main(void)
{
    static const struct CMUnitTest fixed[] = {
        cmocka_unit_test(test_sha256_hex),
        cmocka_unit_test(test_canonical_uri),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_signer_owned_headers),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_deterministic_and_reusable),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_bounds),
    };
    boto_file boto;
    struct CMUnitTest *tests;
    size_t n_suite = sizeof suite_cases / sizeof suite_cases[0], n = 0;
    int failed;

    boto_load(&boto);
    tests = calloc(K2P_ARRAY_LEN(fixed) + n_suite + 1 + boto.n, sizeof *tests);
    if (!tests)
        return 1;
    for (size_t i = 0; i < K2P_ARRAY_LEN(fixed); i++)
        tests[n++] = fixed[i];
    for (size_t i = 0; i < n_suite; i++)
        tests[n++] = (struct CMUnitTest){suite_cases[i].name, test_suite_case, NULL, NULL,
                                         (void *)&suite_cases[i]};
    tests[n++] = (struct CMUnitTest){"botocore-file", test_boto_file_loaded, NULL, NULL, &boto};
    for (size_t i = 0; i < boto.n; i++)
        tests[n++] =
            (struct CMUnitTest){boto.cases[i].name, test_boto_case, NULL, NULL, &boto.cases[i]};
    failed = _cmocka_run_group_tests("aws_sigv4", tests, n, NULL, NULL);
    free(tests);
    boto_free(&boto);
    return failed;
}
