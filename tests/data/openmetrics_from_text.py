#!/usr/bin/python3
"""Re-encode a Prometheus text exposition (stdin) as OpenMetrics 1.0 (stdout).

The Debian node_exporter (1.5.0) only serves the Prometheus text format, so the
OpenMetrics capture in this directory is produced by the official Python
client's parser and OpenMetrics encoder (python3-prometheus-client), an
encoder independent of guardia. Usage:
    curl -s http://127.0.0.1:9100/metrics | tests/data/openmetrics_from_text.py
"""
import sys

from prometheus_client.openmetrics.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families


class Families:
    def __init__(self, families):
        self.families = families

    def collect(self):
        return self.families


families = list(text_string_to_metric_families(sys.stdin.read()))
sys.stdout.write(generate_latest(Families(families)).decode("utf-8"))
