"""Throughput benchmarks of the core AlexNet and the CPU performance-regression gate."""
