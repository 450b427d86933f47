"""scripts/bench-compare reads run_bench's table: rates with units and thousands, and ratios."""

from tests.bench.compare_bench import Row, parse_table

OUTPUT = """\
sofs vs pyfuse3 passthrough, 6.18.44, 2 cores, 2026-12-02 04:54, mounts interleaved, 1 run per row, run took 102 s
test                                           sofs  passthrough  sofs/pt
--------------------------------------  -----------  -----------  -------
seq write 1 GiB (1 MiB writes + fsync)  249.5 MiB/s  245.1 MiB/s     1.02
create+write+close 10,000 x 4 KiB             320/s      1,496/s     0.21
stat 10,000 x 4 KiB (warm)                 12,152/s     12,446/s     0.98
unlink 2,000 x 512 KiB                            -      1,514/s        -
sofs mount (pid 26942) peak RSS over the tests: 358 MiB

single values
  write  sofs  249.5
"""


def test_the_table_is_read_row_by_row_and_rows_without_a_value_are_left_out():
    assert parse_table(OUTPUT) == {
        "seq write 1 GiB (1 MiB writes + fsync)": Row(249.5, 1.02),
        "create+write+close 10,000 x 4 KiB": Row(320.0, 0.21),
        "stat 10,000 x 4 KiB (warm)": Row(12152.0, 0.98),
    }
