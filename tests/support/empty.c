/* empty.c - keeps the test support library non-empty. */
typedef int k2p_test_support_nonempty;
