"""Flyway's checksum of a script, against values computed by Java itself: a BufferedReader over the
UTF-8 file, readLine, the first line's BOM removed, each line's UTF-8 bytes into java.util.zip.CRC32,
cast to int -- Flyway's ChecksumCalculator.calculateChecksumForResource, run on OpenJDK 17."""

from __future__ import annotations

import pytest

from pgshift.migrations.formats.flyway import flyway_checksum

JAVA_VECTORS = [
    ("", 0),
    ("SELECT 1;\n", 78787420),
    ("SELECT 1;\r\n", 78787420),  # line endings do not count
    ("SELECT 1;\r", 78787420),
    ("SELECT 1;", 78787420),
    ("\ufeffSELECT 1;\n", 78787420),  # nor does a BOM
    ("CREATE OR REPLACE VIEW users_view AS\n  SELECT id, email FROM users;\n", 1010155618),
    ("CREATE OR REPLACE VIEW users_view AS\r\n\r\n  SELECT id, email FROM users;\r\n\r\n", 1010155618),
    ("-- café ☕ 𝄞\nCOMMENT ON TABLE t IS 'naïve';\n", -1685878144),  # UTF-8 bytes; negative as Java's int
    ("a\r\nb\rc\n\nd", -310194927),
    ("\ufeffa\n\ufeffb\n", -444179588),  # only the first line's BOM is dropped
    ("SELECT 1;\u2028\x0c\x1c\x85SELECT 2;\n", 627742936),  # readLine splits on \r and \n only
]


@pytest.mark.parametrize(("text", "expected"), JAVA_VECTORS)
def test_flyway_checksum_matches_java(text: str, expected: int) -> None:
    assert flyway_checksum(text) == expected
