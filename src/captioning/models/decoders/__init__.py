"""Decoder registry: `train.decoder` name -> decoder class."""
from __future__ import annotations

from captioning.io import InputError
from captioning.models.decoders.base import Decoder, DecoderConfig, ImageFeatures, State
from captioning.models.decoders.show_tell import ShowTellDecoder

DECODERS: dict[str, type[Decoder]] = {
    "show_tell": ShowTellDecoder,
    "lstm": ShowTellDecoder,
}


def build_decoder(name: str, config: DecoderConfig) -> Decoder:
    if name not in DECODERS:
        raise InputError(f"train.decoder = {name!r}: not available; choose one of {sorted(DECODERS)}")
    return DECODERS[name](config)


__all__ = ["DECODERS", "Decoder", "DecoderConfig", "ImageFeatures", "State", "build_decoder"]
