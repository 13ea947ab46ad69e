"""SI unit factors. Inside meshplan every quantity is in SI base units (s, bytes, FLOP, FLOP/s,
bytes/s); the name carries the unit. Conversions to human units happen only when printing, and
only with the factors below, so that a unit factor appears in exactly one place."""

KB = 1e3
MB = 1e6
GB = 1e9
TB = 1e12
KIB = 2.0**10
MIB = 2.0**20
GIB = 2.0**30
TFLOPS = 1e12
MS = 1e-3
US = 1e-6


def fmt_bytes(num_bytes: float) -> str:
    """Bytes for people: GiB above 1 GiB, MiB above 1 MiB, else KiB."""
    if num_bytes >= GIB:
        return f"{num_bytes / GIB:.2f} GiB"
    if num_bytes >= MIB:
        return f"{num_bytes / MIB:.1f} MiB"
    return f"{num_bytes / KIB:.1f} KiB"


def fmt_seconds(seconds: float) -> str:
    """Seconds for people: s above 1 s, ms above 1 ms, else us."""
    if seconds >= 1.0:
        return f"{seconds:.2f} s"
    if seconds >= MS:
        return f"{seconds / MS:.2f} ms"
    return f"{seconds / US:.1f} us"


def fmt_count(value: float) -> str:
    """Large counts with thousands separators; small ones with 3 significant digits."""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def plural(n: float, word: str, many: str | None = None) -> str:
    """``n word`` with the plural for any count but one: 1 GPU, 2 GPUs, 1 process, 3 processes."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"
