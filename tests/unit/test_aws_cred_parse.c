/* test_aws_cred_parse.c - the pure parts of the network credential providers: the STS XML and
 * container/IMDS JSON extractors, turning an answer into credentials, URL redaction, the
 * container host allow-list, the STS endpoint choice and token-file reading.
 *
 * Threading: single-threaded. No network: nothing here opens a socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aws_cred_internal.h"
#include "kinesis2pg/aws_cred_parse.h"

#define SECRET "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
#define TOKEN "FwoGZXIvYXdzEXAMPLESESSIONTOKEN+/="

static const char sts_ok[] =
    "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
    "  <AssumeRoleWithWebIdentityResult>\n"
    "    <SubjectFromWebIdentityToken>system:serviceaccount:ns:sa</SubjectFromWebIdentityToken>\n"
    "    <Audience>sts.amazonaws.com</Audience>\n"
    "    <AssumedRoleUser>\n"
    "      <Arn>arn:aws:sts::123456789012:assumed-role/r/s</Arn>\n"
    "      <AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId>\n"
    "    </AssumedRoleUser>\n"
    "    <Credentials>\n"
    "      <SessionToken>" TOKEN "</SessionToken>\n"
    "      <SecretAccessKey>" SECRET "</SecretAccessKey>\n"
    "      <Expiration>2030-01-01T00:00:00Z</Expiration>\n"
    "      <AccessKeyId>ASIAEXAMPLE</AccessKeyId>\n"
    "    </Credentials>\n"
    "    <Provider>www.amazon.com</Provider>\n"
    "  </AssumeRoleWithWebIdentityResult>\n"
    "  <ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId>"
    "</ResponseMetadata>\n"
    "</AssumeRoleWithWebIdentityResponse>\n";

static int xml(const char *s, k2p_cred_doc *d, k2p_err *e)
{
    k2p_err_clear(e);
    return k2p_sts_xml_extract(s, strlen(s), d, e);
}

static int json(const char *s, k2p_cred_doc *d, k2p_err *e)
{
    k2p_err_clear(e);
    return k2p_cred_json_extract(s, strlen(s), d, e);
}

static void assert_doc_empty(const k2p_cred_doc *d)
{
    assert_null(d->access_key_id);
    assert_null(d->secret_access_key);
    assert_null(d->session_token);
    assert_null(d->expiration);
    assert_null(d->code);
    assert_null(d->message);
}

/* ---------------------------------------------------------------------------------------- */

static void test_xml_success(void **state)
{
    (void)state;
    k2p_cred_doc d;
    k2p_aws_creds c;
    k2p_err e;
    assert_int_equal(xml(sts_ok, &d, &e), 0);
    assert_string_equal(d.access_key_id, "ASIAEXAMPLE");
    assert_string_equal(d.secret_access_key, SECRET);
    assert_string_equal(d.session_token, TOKEN);
    assert_string_equal(d.expiration, "2030-01-01T00:00:00Z");
    assert_null(d.code);
    assert_int_equal(k2p_cred_doc_to_creds(&d, "test", "web identity", &c, &e), 0);
    assert_string_equal(c.access_key_id, "ASIAEXAMPLE");
    assert_string_equal(c.secret_access_key, SECRET);
    assert_string_equal(c.session_token, TOKEN);
    assert_int_equal(c.expires_at, 1893456000);
    assert_string_equal(c.source, "web identity");
    k2p_aws_creds_deinit(&c);
    k2p_cred_doc_deinit(&d);
    k2p_cred_doc_deinit(&d);
    k2p_cred_doc_deinit(NULL);
}

static void test_xml_forms(void **state)
{
    (void)state;
    k2p_cred_doc d;
    k2p_err e;
    /* A declaration, comments, prefixes, entities, CDATA, attributes with '>' in quotes. */
    const char *doc =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- leading comment -->\n"
        "<sts:AssumeRoleResponse xmlns:sts='urn:x' a=\"1>2\">"
        "<sts:AssumeRoleResult><sts:Credentials>"
        "<sts:AccessKeyId> ASIA<!-- c -->KEY </sts:AccessKeyId>"
        "<sts:SecretAccessKey>a&amp;b&lt;c&gt;d&quot;e&apos;f&#65;&#x42;&#x20AC;</"
        "sts:SecretAccessKey>"
        "<sts:SessionToken><![CDATA[tok<&>en]]></sts:SessionToken>"
        "<sts:Expiration>2030-01-01T00:00:00Z</sts:Expiration>"
        "</sts:Credentials></sts:AssumeRoleResult></sts:AssumeRoleResponse>\n<!-- trailing -->\n";
    assert_int_equal(xml(doc, &d, &e), 0);
    assert_string_equal(d.access_key_id, "ASIAKEY");
    assert_string_equal(d.secret_access_key, "a&b<c>d\"e'fAB\xE2\x82\xAC");
    assert_string_equal(d.session_token, "tok<&>en");
    k2p_cred_doc_deinit(&d);

    /* Fields outside Credentials are not picked up. */
    assert_int_equal(xml("<R><AccessKeyId>X</AccessKeyId><Other><AccessKeyId>Y</AccessKeyId>"
                         "</Other></R>",
                         &d, &e),
                     0);
    assert_doc_empty(&d);

    /* Self-closing and empty elements. */
    assert_int_equal(xml("<R><Credentials><SessionToken/><AccessKeyId></AccessKeyId>"
                         "</Credentials></R>",
                         &d, &e),
                     0);
    assert_string_equal(d.session_token, "");
    assert_string_equal(d.access_key_id, "");
    k2p_cred_doc_deinit(&d);
}

static void test_xml_error_response(void **state)
{
    (void)state;
    k2p_cred_doc d;
    k2p_err e;
    assert_int_equal(
        xml("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\n"
            "  <Error>\n    <Type>Sender</Type>\n    <Code>InvalidIdentityToken</Code>\n"
            "    <Message>Couldn't retrieve verification key from your identity "
            "provider</Message>\n"
            "  </Error>\n  <RequestId>abc</RequestId>\n</ErrorResponse>\n",
            &d, &e),
        0);
    assert_string_equal(d.code, "InvalidIdentityToken");
    assert_string_equal(d.message,
                        "Couldn't retrieve verification key from your identity provider");
    assert_null(d.access_key_id);
    k2p_cred_doc_deinit(&d);
}

static void test_xml_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "   ",
        "just text",
        "<R>",
        "<R><Credentials><AccessKeyId>" SECRET "</AccessKeyId>",
        "<R></S>",
        "<R><A></R></A>",
        "<R></R><S></S>",
        "<R></R>trailing",
        "<!DOCTYPE R [<!ENTITY x \"" SECRET "\">]><R>&x;</R>",
        "<R>&unknown;</R>",
        "<R>&#0;</R>",
        "<R>&#xD800;</R>",
        "<R>&#12345678901;</R>",
        "<R>&amp</R>",
        "<R><!-- unterminated </R>",
        "<R><![CDATA[ unterminated </R>",
        "<![CDATA[x]]><R/>",
        "<?xml unterminated",
        "<R a=b></R>",
        "<R a=\"x></R>",
        "<R a=\"1\"b=\"2\"></R>",
        "< R></R>",
        "<1R></1R>",
        "<R></ R>",
        "<R/ >",
        ("<R><Credentials><AccessKeyId>A</AccessKeyId><AccessKeyId>B</AccessKeyId>"
         "</Credentials></R>"),
    };
    for (size_t i = 0; i < K2P_ARRAY_LEN(bad); i++) {
        k2p_cred_doc d;
        k2p_err e;
        int rc = xml(bad[i], &d, &e);
        if (rc != K2P_EPARSE)
            fail_msg("input %zu: got %d (%s)", i, rc, e.msg);
        assert_doc_empty(&d);
        assert_true(e.msg[0] != '\0');
        assert_null(strstr(e.msg, "wJalr"));
    }

    /* A NUL byte inside. */
    {
        const char s[] = "<R><Credentials><AccessKeyId>A\0B</AccessKeyId></Credentials></R>";
        k2p_cred_doc d;
        k2p_err e;
        assert_int_equal(k2p_sts_xml_extract(s, sizeof s - 1, &d, &e), K2P_EPARSE);
        assert_doc_empty(&d);
    }
}

static void test_xml_bounds(void **state)
{
    (void)state;
    k2p_cred_doc d;
    k2p_err e;
    char *big;
    size_t n = 0;

    /* 32 levels are fine, 33 are not. */
    for (int depth = 32; depth <= 33; depth++) {
        char s[1024];
        size_t k = 0;
        for (int i = 0; i < depth; i++)
            k += (size_t)snprintf(s + k, sizeof s - k, "<a>");
        for (int i = 0; i < depth; i++)
            k += (size_t)snprintf(s + k, sizeof s - k, "</a>");
        assert_int_equal(xml(s, &d, &e), depth == 32 ? 0 : K2P_EPARSE);
        k2p_cred_doc_deinit(&d);
    }

    /* A value longer than K2P_CRED_FIELD_MAX. */
    big = malloc(K2P_CRED_RESPONSE_MAX + 100);
    n += (size_t)snprintf(big, 100, "<R><Credentials><SessionToken>");
    memset(big + n, 'A', K2P_CRED_FIELD_MAX + 1);
    n += K2P_CRED_FIELD_MAX + 1;
    n += (size_t)snprintf(big + n, 100, "</SessionToken></Credentials></R>");
    assert_int_equal(k2p_sts_xml_extract(big, n, &d, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "longer than"));
    assert_doc_empty(&d);

    /* An answer longer than K2P_CRED_RESPONSE_MAX. */
    memset(big, ' ', K2P_CRED_RESPONSE_MAX + 1);
    memcpy(big, "<R/>", 4);
    assert_int_equal(k2p_sts_xml_extract(big, K2P_CRED_RESPONSE_MAX + 1, &d, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "larger than"));
    assert_int_equal(k2p_sts_xml_extract(big, K2P_CRED_RESPONSE_MAX, &d, &e), 0);
    free(big);
}

/* ---------------------------------------------------------------------------------------- */

static void test_json_success(void **state)
{
    (void)state;
    k2p_cred_doc d;
    k2p_aws_creds c;
    k2p_err e;
    /* The container endpoint's answer. */
    assert_int_equal(json("{\"AccessKeyId\":\"ASIACONTAINER\",\"Expiration\":"
                          "\"2030-01-01T00:00:00Z\",\"RoleArn\":\"arn:aws:iam::1:role/r\","
                          "\"SecretAccessKey\":\"" SECRET "\",\"Token\":\"" TOKEN "\"}",
                          &d, &e),
                     0);
    assert_string_equal(d.access_key_id, "ASIACONTAINER");
    assert_string_equal(d.secret_access_key, SECRET);
    assert_string_equal(d.session_token, TOKEN);
    assert_int_equal(k2p_cred_doc_to_creds(&d, "test", "container", &c, &e), 0);
    assert_int_equal(c.expires_at, 1893456000);
    k2p_aws_creds_deinit(&c);
    k2p_cred_doc_deinit(&d);

    /* IMDS: pretty-printed, with Code and other members. */
    assert_int_equal(json("{\n  \"Code\" : \"Success\",\n  \"LastUpdated\" : "
                          "\"2024-05-01T12:00:00Z\",\n  \"Type\" : \"AWS-HMAC\",\n"
                          "  \"AccessKeyId\" : \"ASIAIMDS\",\n  \"SecretAccessKey\" : \"" SECRET
                          "\",\n  \"Token\" : \"" TOKEN "\",\n  \"Expiration\" : "
                          "\"2030-01-01T06:00:00Z\"\n}\n",
                          &d, &e),
                     0);
    assert_string_equal(d.code, "Success");
    assert_string_equal(d.access_key_id, "ASIAIMDS");
    k2p_cred_doc_deinit(&d);

    /* Escapes, and members of every type skipped. */
    assert_int_equal(json("{\"Nested\":{\"AccessKeyId\":\"no\",\"a\":[1,2,{\"b\":\"}]\"}]},"
                          "\"n\":-1.5e3,\"t\":true,\"f\":false,\"z\":null,\"e\":{},\"l\":[],"
                          "\"Acc\\u0065ssKeyId\":\"\\u0041KID\\/x\",\"Message\":"
                          "\"\\\"q\\\" \\\\ \\n\\t\\uD83D\\uDE00\\u00e9\"}",
                          &d, &e),
                     0);
    assert_string_equal(d.access_key_id, "AKID/x");
    assert_string_equal(d.message, "\"q\" \\ \n\t\xF0\x9F\x98\x80\xC3\xA9");
    k2p_cred_doc_deinit(&d);

    assert_int_equal(json(" {} ", &d, &e), 0);
    assert_doc_empty(&d);
}

static void test_json_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "[]",
        "\"AccessKeyId\"",
        "{\"AccessKeyId\":\"A\"",
        "{\"AccessKeyId\":\"" SECRET "\",}",
        "{\"AccessKeyId\":1}",
        "{\"Token\":null}",
        "{\"Expiration\":{\"a\":1}}",
        "{\"AccessKeyId\":\"A\",\"AccessKeyId\":\"B\"}",
        "{\"Token\":\"\\u0000\"}",
        "{\"Token\":\"\\uD800\"}",
        "{\"Token\":\"\xC3\x28\"}",
        "{'AccessKeyId':'A'}",
        "{\"a\":1} {\"b\":2}",
    };
    for (size_t i = 0; i < K2P_ARRAY_LEN(bad); i++) {
        k2p_cred_doc d;
        k2p_err e;
        int rc = json(bad[i], &d, &e);
        if (rc != K2P_EPARSE)
            fail_msg("input %zu: got %d (%s)", i, rc, e.msg);
        assert_doc_empty(&d);
        assert_null(strstr(e.msg, "wJalr"));
    }
    {
        k2p_cred_doc d;
        k2p_err e;
        size_t n = K2P_CRED_FIELD_MAX + 40;
        char *s = malloc(n + 1);
        memcpy(s, "{\"Token\":\"", 10);
        memset(s + 10, 'x', n - 12);
        memcpy(s + n - 2, "\"}", 2);
        s[n] = '\0';
        assert_int_equal(json(s, &d, &e), K2P_EPARSE);
        assert_doc_empty(&d);
        free(s);
    }
}

static void test_doc_to_creds_errors(void **state)
{
    (void)state;
    k2p_cred_doc d = {0};
    k2p_aws_creds c;
    k2p_err e;
    char id[] = "ASIA", sk[] = SECRET, tok[] = TOKEN, bad_exp[] = "tomorrow",
         exp[] = "2030-01-01T00:00:00Z", empty[] = "";

    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), K2P_EPARSE);
    assert_string_equal(e.msg, "STS answer has no AccessKeyId");
    assert_null(c.access_key_id);
    d.access_key_id = id;
    d.secret_access_key = empty;
    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), K2P_EPARSE);
    assert_string_equal(e.msg, "STS answer has no SecretAccessKey");
    d.secret_access_key = sk;
    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), K2P_EPARSE);
    assert_non_null(strstr(e.msg, "has no session token"));
    d.session_token = tok;
    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), K2P_EPARSE);
    assert_string_equal(e.msg, "STS answer has no Expiration");
    d.expiration = bad_exp;
    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), K2P_EPARSE);
    assert_string_equal(e.msg, "STS answer: Expiration is not an RFC 3339 time");
    d.expiration = exp;
    assert_int_equal(k2p_cred_doc_to_creds(&d, "STS answer", "x", &c, &e), 0);
    k2p_aws_creds_deinit(&c);
}

/* ---------------------------------------------------------------------------------------- */

static void test_url_redact(void **state)
{
    (void)state;
    char b[300];
    assert_string_equal(
        k2p_cred_url_redact("https://user:pw@host:8443/p/a?X-Token=secret#frag", b, sizeof b),
        "https://host:8443/p/a");
    assert_string_equal(k2p_cred_url_redact("http://169.254.170.2/v2/credentials/abc", b, sizeof b),
                        "http://169.254.170.2/v2/credentials/abc");
    assert_string_equal(k2p_cred_url_redact("http://h?q=1", b, sizeof b), "http://h");
    assert_string_equal(k2p_cred_url_redact("http://a@b@h/x", b, sizeof b), "http://h/x");
    assert_string_equal(k2p_cred_url_redact(NULL, b, sizeof b), "");
    assert_string_equal(k2p_cred_url_redact("http://long.example.com/x", b, 10), "http://lo");
}

static void test_container_url_check(void **state)
{
    (void)state;
    static const char *const ok[] = {
        "http://127.0.0.1/creds",     "http://127.1.2.3:8080/creds", "http://localhost:99/x",
        "http://[::1]:80/x",          "http://169.254.170.2/v2/c",   "http://169.254.170.23/v1/c",
        "http://[fd00:ec2::23]/v1/c", "https://creds.example.com/x", "https://10.0.0.1/x",
    };
    static const char *const no[] = {
        "http://10.0.0.1/creds",
        "http://169.254.169.254/x",
        "http://example.com/x",
        "http://[fd00:ec2::24]/x",
        "http://128.0.0.1/x",
        "ftp://127.0.0.1/x",
        "not a url",
        "http://169.254.170.3/x",
        "http://[::2]/x",
    };
    k2p_err e;
    for (size_t i = 0; i < K2P_ARRAY_LEN(ok); i++)
        if (k2p_cred_container_url_check(ok[i], &e) != 0)
            fail_msg("%s refused: %s", ok[i], e.msg);
    for (size_t i = 0; i < K2P_ARRAY_LEN(no); i++)
        if (k2p_cred_container_url_check(no[i], &e) != K2P_ECONFIG)
            fail_msg("%s accepted", no[i]);
    assert_int_equal(k2p_cred_container_url_check("http://10.0.0.1/creds?token=abc", &e),
                     K2P_ECONFIG);
    assert_non_null(strstr(e.msg, "host 10.0.0.1 is not allowed"));
    assert_null(strstr(e.msg, "abc"));
}

static void test_sts_endpoint(void **state)
{
    (void)state;
    const char *both[] = {"AWS_ENDPOINT_URL_STS=http://127.0.0.1:1/", "AWS_ENDPOINT_URL=http://x"};
    k2p_env env = k2p_env_from_list(both, 2);
    k2p_sts_opts o = {&env, "eu-west-1", NULL, "test"};
    k2p_err e;
    char *url;

    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), 0);
    assert_string_equal(url, "http://127.0.0.1:1");
    free(url);
    env = k2p_env_from_list(both + 1, 1);
    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), 0);
    assert_string_equal(url, "http://x");
    free(url);
    env = k2p_env_from_list(both, 0);
    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), 0);
    assert_string_equal(url, "https://sts.eu-west-1.amazonaws.com");
    free(url);
    o.region = "cn-north-1";
    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), 0);
    assert_string_equal(url, "https://sts.cn-north-1.amazonaws.com.cn");
    free(url);
    o.region = NULL;
    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), 0);
    assert_string_equal(url, "https://sts.amazonaws.com");
    free(url);
    o.region = "evil.example.com/";
    assert_int_equal(k2p_sts_endpoint(&o, &url, &e), K2P_ECONFIG);
    assert_null(url);
    assert_non_null(strstr(e.msg, "test: region"));

    char name[64];
    char want[64];
    snprintf(want, sizeof want, "kinesis2pg-%ld", (long)getpid());
    assert_string_equal(k2p_sts_default_session_name(name, sizeof name), want);
}

static void test_token_file(void **state)
{
    (void)state;
    char dir[] = "/tmp/k2p_cred_parse_XXXXXX", path[300], *tok;
    k2p_err e;
    FILE *f;

    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/token", dir);

    assert_int_equal(k2p_cred_read_token_file(path, "what", 100, &tok, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "what "));
    assert_non_null(strstr(e.msg, path));
    assert_null(tok);

    f = fopen(path, "w");
    fputs("  eyJhbGciOi.payload.sig\r\n\n", f);
    fclose(f);
    assert_int_equal(k2p_cred_read_token_file(path, "what", 100, &tok, &e), 0);
    assert_string_equal(tok, "eyJhbGciOi.payload.sig");
    k2p_free_secret(&tok);

    assert_int_equal(k2p_cred_read_token_file(path, "what", 10, &tok, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "larger than 10 bytes"));

    f = fopen(path, "w");
    fputs("line1\nline2\n", f);
    fclose(f);
    assert_int_equal(k2p_cred_read_token_file(path, "what", 100, &tok, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "line break"));
    assert_null(strstr(e.msg, "line1"));

    f = fopen(path, "w");
    fputs(" \n", f);
    fclose(f);
    assert_int_equal(k2p_cred_read_token_file(path, "what", 100, &tok, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "is empty"));

    assert_int_equal(k2p_cred_read_token_file(dir, "what", 100, &tok, &e), K2P_EAUTH);
    assert_non_null(strstr(e.msg, "not a regular file"));
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xml_success),        cmocka_unit_test(test_xml_forms),
        cmocka_unit_test(test_xml_error_response), cmocka_unit_test(test_xml_malformed),
        cmocka_unit_test(test_xml_bounds),         cmocka_unit_test(test_json_success),
        cmocka_unit_test(test_json_malformed),     cmocka_unit_test(test_doc_to_creds_errors),
        cmocka_unit_test(test_url_redact),         cmocka_unit_test(test_container_url_check),
        cmocka_unit_test(test_sts_endpoint),       cmocka_unit_test(test_token_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
