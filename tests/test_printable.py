"""What may reach a terminal: escape sequences and control characters go, text stays."""

import pytest

from meshplan.printable import clipped, has_control, printable


@pytest.mark.parametrize("raw, shown", [
    ("a\x1b[31mred\x1b[0m", "ared"),           # CSI colour
    ("a\x1b[2J\x1b[Hb", "ab"),                 # clear screen, cursor home
    ("x\x1b]0;new title\x07y", "xy"),          # OSC window title
    ("x\x1b]8;;http://e\x1b\\link\x1b]8;;\x1b\\y", "xlinky"),  # OSC 8 hyperlink
    ("ok\x1bc", "ok"),                         # RIS (terminal reset)
    ("a\x9b2Jb", "ab"),                        # 8-bit CSI
    ("real\rfake", "realfake"),                # carriage return cannot overwrite the line
    ("a\x00b\x07c\x08d\x7fe\x85f", "abcdef"),  # other C0, DEL, C1
    ("\u202eevil", "evil"),                    # bidi override
    ("tab\tand\nnewline", "tab\tand\nnewline"),
    ("deepseek-ai/DeepSeek-V3 é 中 <|>", "deepseek-ai/DeepSeek-V3 é 中 <|>"),
])
def test_printable(raw, shown):
    assert printable(raw) == shown


def test_one_line_and_has_control():
    assert printable("a\nb\x1b[1m", one_line=True) == "a b"
    assert printable(3.5) == "3.5"
    assert all(has_control(s) for s in ("a\nb", "a\tb", "a\rb", "a\x1bb", "a\x9bb"))
    assert not has_control("/models/x$(touch PWNED) é/config.json")


def test_clipped_cuts_at_a_word():
    # "aa bb cc" is 8 characters; at width 7 the first 3 ("aa ") leave one whole word, then " ...".
    assert clipped("aa bb cc", 7) == "aa ..."
    assert clipped("aa  bb\ncc", 20) == "aa bb cc"  # fits: whitespace folded, nothing cut
