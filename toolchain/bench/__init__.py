"""On-device benchmarking: statistics, the shared result schema, and the runners.

Runners (serial, QEMU, host-TFLM, ADB, SSH) all return a :class:`~toolchain.bench.result.BenchResult`
so that reports and comparisons do not care where a number came from.
"""
