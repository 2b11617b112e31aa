"""The Defender services: plain values in, plain values out; no Django request objects in here."""
