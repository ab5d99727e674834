#!/usr/bin/env python3
"""Self instructions of a callgrind dump, grouped by where they belong.
   bench/breakdown.py DUMP REQUESTS  -> one line per group, instructions/request."""
import re, subprocess, sys
from collections import defaultdict

GROUPS = [  # first match wins
    ("RSA (JOSE verify/sign)", r"BN_|bn_|rsa_|RSA_|mont|pss|EVP_PKEY|EVP_Digest|aws_lc_0_\d+_0_(x86_64|ecp|CRYPTO_(?!gcm))"),
    ("TLS records (AES-GCM, rustls)", r"aes|gcm|ghash|rustls|tls13|tokio_rustls|chacha"),
    ("SHA-256 / randomness", r"sha256|SHA256|sha2|rand|getrandom|RAND_|ring_core|digest"),
    ("SQLite engine", r"^sqlite3|^pager|^btree|^vdbe|^wal|^unix|^pcache|^yy|^sqlite|Btree|Pager|Vdbe|^balance|^moveTo|^insert|^get|^pcache|^walIndex"),
    ("sqlx (pool, worker, rows)", r"sqlx|flume|crossbeam|event_listener"),
    ("JSON (serde_json)", r"serde_json|serde_core|serde::|ryu|itoa|serde_urlencoded|form_urlencoded|percent_encoding"),
    # The `time` crate's own paths start its names; tokio's timer
    # (`tokio::runtime::time::`) and std's clock (`…::unix::time::`) are
    # not the log line's.
    ("tracing (log line per request)", r"tracing|sharded_slab|nu_ansi|(^|<)time::|fmt::time"),
    ("metrics", r"metrics|quanta|sketches|portable_atomic"),
    ("x509 / DN", r"x509|der_parser|asn1|oid"),
    ("HTTP (hyper, axum, tower, http)", r"hyper|axum|tower|http::|httparse|matchit|h2::|bytes::"),
    ("tokio runtime / wakers", r"tokio|mio|parking_lot|futures|std::sys::sync|std::thread|epoll|futex"),
    ("malloc / free / memcpy", r"malloc|free|realloc|calloc|memalign|memcpy|memmove|memset|memcmp|strlen|unlink_chunk|_int_|tcache|arena"),
    ("aspen code", r"aspen"),
]

ROOTS = r"clone|start_thread|thread_start|call_once|__rust_begin_short_backtrace|__libc_start|tokio::runtime"

def main():
    dump, n = sys.argv[1], int(sys.argv[2])
    out = subprocess.run(["callgrind_annotate", "--threshold=100", "--auto=no", dump],
                         capture_output=True, text=True).stdout
    totals = defaultdict(int)
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\([^)]*\)\s+(\S.*)$", line)
        if not m:
            continue
        ir = int(m.group(1).replace(",", ""))
        name = m.group(2)
        if "PROGRAM TOTALS" in name:
            total = ir
            continue
        fn = name.split(":", 1)[1] if ":" in name else name
        if total and ir > total * 0.4 and re.search(ROOTS, fn):
            # Thread roots and tokio's poll loop show their callees' cost
            # here (callgrind's cycle handling), not their own. Only they:
            # a leaf can be this large too (aws-lc's RSA squaring is 43%
            # of a private_key_jwt token on an AMD EPYC).
            continue
        for g, rx in GROUPS:
            if re.search(rx, fn):
                totals[g] += ir
                break
        else:
            totals["other (libc, std, core)"] += ir
    print(f"{'total':34s} {total // n:>9,} instructions/request")
    for g, ir in sorted(totals.items(), key=lambda x: -x[1]):
        print(f"  {g:32s} {ir // n:>9,}  {100 * ir / total:5.1f}%")

main()
