"""Inputs: where records come from (MQTT, serial). They hand payloads to the ingest pipeline."""
