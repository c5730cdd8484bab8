/* Tests of cml-sim's tolerant YAML-subset reader (tests/sims/cml-sim/sim_yaml.c): the shared
 * sample topologies, the constructs CML exports use, refusals with line numbers, and robustness
 * against truncated and mutated input (run under ASan/UBSan). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sim_yaml.h"

static char *slurp(const char *name, size_t *len)
{
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", CMLSIM_SAMPLES_DIR, name);
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  assert_non_null(s);
  assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
  s[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return s;
}

static cJSON *parse_ok(const char *text)
{
  char err[256];
  cJSON *j = sim_yaml_parse(text, strlen(text), err, sizeof(err));
  if (!j)
    fail_msg("parse failed: %s\n---\n%s", err, text);
  return j;
}

static const char *str_at(const cJSON *o, const char *name)
{
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
  assert_true(cJSON_IsString(v));
  return v->valuestring;
}

static void test_sample_cml_lab(void **state)
{
  (void)state;
  size_t n;
  char *text = slurp("sample_cml_lab.yaml", &n);
  char err[256];
  cJSON *t = sim_yaml_parse(text, n, err, sizeof(err));
  assert_non_null(t);
  const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(t, "nodes");
  assert_int_equal(cJSON_GetArraySize(nodes), 2);
  const cJSON *n0 = cJSON_GetArrayItem(nodes, 0), *n1 = cJSON_GetArrayItem(nodes, 1);
  assert_string_equal(str_at(n0, "label"), "vmanage-mock");
  assert_string_equal(str_at(n0, "node_definition"), "mock-server");
  assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(n0, "boot_disk_size")));
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(n0, "x")->valueint, 240);
  assert_int_equal(cJSON_GetObjectItemCaseSensitive(n0, "y")->valueint, -160);
  const cJSON *tags = cJSON_GetObjectItemCaseSensitive(n1, "tags");
  assert_int_equal(cJSON_GetArraySize(tags), 2);
  assert_string_equal(cJSON_GetArrayItem(tags, 0)->valuestring, "serial:5042");
  assert_string_equal(cJSON_GetArrayItem(tags, 1)->valuestring, "vnc:5044");
  /* literal block scalar "|-" inside a list item: indentation removed, no final newline, the
   * nested "content: |" of the cloud-config kept verbatim */
  const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(n1, "configuration");
  const char *ud = str_at(cJSON_GetArrayItem(cfg, 0), "content");
  assert_true(strncmp(ud, "#cloud-config\n\n# Network configuration\n", 39) == 0);
  assert_non_null(strstr(ud, "\n    content: |\n      #!/bin/bash\n"));
  assert_non_null(strstr(ud, "# - name: ubuntu\n"));
  const char *nc = str_at(cJSON_GetArrayItem(cfg, 1), "content");
  assert_string_equal(nc + strlen(nc) - 18, "\n      dhcp4: true");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(n1, "interfaces")), 4);
  const cJSON *lab = cJSON_GetObjectItemCaseSensitive(t, "lab");
  assert_string_equal(str_at(lab, "title"), "DEVASC_200-901_LAB-2.5.1");
  assert_string_equal(str_at(lab, "version"), "0.3.0");
  /* multi-line single-quoted scalar: '\n\n        ' folds to one newline */
  assert_string_equal(str_at(lab, "notes"), "\n");
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "links")), 1);
  assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(t, "annotations")), 3);
  const cJSON *sa = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "smart_annotations"), 0);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(sa, "is_on")));
  assert_string_equal(str_at(sa, "border_style"), "");
  cJSON_Delete(t);
  free(text);
}

static void test_all_samples_parse(void **state)
{
  (void)state;
  const char *files[] = {"TEST-LAB-1.1.yaml", "exam-associate-auto-v1.1-lab-2.5.1.yaml",
                         "exam-associate-auto-v1.1-lab-lab-2.5.1.yaml", "multi-sessions.yaml",
                         "single-session.yaml"};
  for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
    size_t n;
    char *text = slurp(files[i], &n);
    char err[256];
    cJSON *t = sim_yaml_parse(text, n, err, sizeof(err));
    if (!t)
      fail_msg("%s: %s", files[i], err);
    assert_true(cJSON_IsObject(t));
    if (i == 0) {
      const cJSON *nodes = cJSON_GetObjectItemCaseSensitive(t, "nodes");
      assert_int_equal(cJSON_GetArraySize(nodes), 3);
      assert_string_equal(str_at(cJSON_GetArrayItem(nodes, 2), "label"), "vManageMockAPI");
      const cJSON *cfg = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(nodes, 0),
                                                          "configuration");
      assert_true(cJSON_IsArray(cfg) && cJSON_GetArraySize(cfg) == 0);
    } else {
      assert_null(cJSON_GetObjectItemCaseSensitive(t, "nodes")); /* not topologies */
    }
    cJSON_Delete(t);
    free(text);
  }
}

static void test_scalars_and_flow(void **state)
{
  (void)state;
  cJSON *j = parse_ok("a: 1\nb: -2.5\nc: true\nd: False\ne: ~\nf:\ng: 0.3.0\nh: 0755\n"
                      "i: 'it''s'\nj: \"tab\\there \\u00e9\"\nk: [1, 'two', {x: y}, []]\n"
                      "l: {p: [a, b], q: \"c, d\"}\nm: plain text # comment\nn: http://x:80/y\n"
                      "\"quoted key\": v\n");
  assert_int_equal(cJSON_GetObjectItem(j, "a")->valueint, 1);
  assert_true(cJSON_GetObjectItem(j, "b")->valuedouble == -2.5);
  assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "c")));
  assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "d")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "e")));
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(j, "f")));
  assert_string_equal(str_at(j, "g"), "0.3.0");
  assert_string_equal(str_at(j, "h"), "0755");
  assert_string_equal(str_at(j, "i"), "it's");
  assert_string_equal(str_at(j, "j"), "tab\there \xc3\xa9");
  char *k = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "k"));
  assert_string_equal(k, "[1,\"two\",{\"x\":\"y\"},[]]");
  free(k);
  char *l = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "l"));
  assert_string_equal(l, "{\"p\":[\"a\",\"b\"],\"q\":\"c, d\"}");
  free(l);
  assert_string_equal(str_at(j, "m"), "plain text");
  assert_string_equal(str_at(j, "n"), "http://x:80/y");
  assert_string_equal(str_at(j, "quoted key"), "v");
  cJSON_Delete(j);
}

static void test_blocks(void **state)
{
  (void)state;
  cJSON *j = parse_ok("keep: |+\n  a\n\n  b\n\nclip: |\n  a\n   b\n\nstrip: |-\n  a\n\n"
                      "folded: >\n  one\n  two\n\n  three\nseq:\n- x\n- - y\n  - z\n- k: v\n  k2: v2\n"
                      "---\nlast: [a,\n  b]\n");
  assert_string_equal(str_at(j, "keep"), "a\n\nb\n\n");
  assert_string_equal(str_at(j, "clip"), "a\n b\n");
  assert_string_equal(str_at(j, "strip"), "a");
  assert_string_equal(str_at(j, "folded"), "one two\nthree\n");
  char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "seq"));
  assert_string_equal(s, "[\"x\",[\"y\",\"z\"],{\"k\":\"v\",\"k2\":\"v2\"}]");
  free(s);
  s = cJSON_PrintUnformatted(cJSON_GetObjectItem(j, "last"));
  assert_string_equal(s, "[\"a\",\"b\"]");
  free(s);
  cJSON_Delete(j);
}

static void expect_error(const char *text, const char *needle)
{
  char err[256] = "";
  cJSON *j = sim_yaml_parse(text, strlen(text), err, sizeof(err));
  if (j) {
    char *p = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    fail_msg("expected an error for:\n%s\ngot %s", text, p);
  }
  if (!strstr(err, needle))
    fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_errors(void **state)
{
  (void)state;
  expect_error("", "empty");
  expect_error("# only a comment\n", "empty");
  expect_error("a: 'open\nb: c\n", "line 1");
  expect_error("a: [1, 2\n", "line 1");
  expect_error("a: 1\n  b: 2\n", "line 2");
  expect_error("a:\n  - x\n  y: 1\n", "line");
  expect_error("a: \"x\" trailing\n", "line 1");
  expect_error("a: {b: 1]\n", "line 1");
  char deep[400];
  size_t o = 0;
  for (int i = 0; i < 100; i++)
    deep[o++] = '[';
  deep[o] = '\0';
  expect_error(deep, "line 1");
  /* deep block nesting: 80 levels of "- " */
  char *blk = calloc(1, 100 * 84);
  assert_non_null(blk);
  for (int i = 0; i < 80; i++) {
    memset(blk + strlen(blk), ' ', (size_t)i * 2);
    strcat(blk, "-\n");
  }
  expect_error(blk, "deep");
  free(blk);
}

static void test_truncated_and_mutated(void **state)
{
  (void)state;
  size_t n;
  char *text = slurp("sample_cml_lab.yaml", &n);
  char err[256];
  size_t ok = 0, bad = 0;
  for (size_t cut = 0; cut <= n; cut += 3) {
    cJSON *j = sim_yaml_parse(text, cut, err, sizeof(err));
    if (j)
      ok++;
    else
      bad++;
    cJSON_Delete(j);
  }
  assert_true(ok > 0 && bad > 0);
  uint64_t s = 0x243f6a8885a308d3ULL;
  char *m = malloc(n);
  assert_non_null(m);
  static const char alphabet[] = " \n\t-:'\"[]{},#|>&!*?%@`\\a0";
  for (int round = 0; round < 3000; round++) {
    memcpy(m, text, n);
    for (int k = 0; k < 4; k++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      m[s % n] = alphabet[(s >> 32) % (sizeof(alphabet) - 1)];
    }
    cJSON *j = sim_yaml_parse(m, n, err, sizeof(err));
    cJSON_Delete(j);
  }
  free(m);
  free(text);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sample_cml_lab),   cmocka_unit_test(test_all_samples_parse),
      cmocka_unit_test(test_scalars_and_flow), cmocka_unit_test(test_blocks),
      cmocka_unit_test(test_errors),           cmocka_unit_test(test_truncated_and_mutated),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
