"""Dataset readers for the real formats (Market-1501, CUHK03-NP, CASIA id folders, LFW pairs,
insightface .bin, RFW) and the procedural toy identity world that is written in those formats."""
from rgsyn.data.cuhk03 import read_cuhk03
from rgsyn.data.faces import read_bin, read_id_folders, read_pairs, read_verification
from rgsyn.data.images import load_image
from rgsyn.data.market import read_market1501
from rgsyn.data.records import FaceRecord, PairSet, ReidRecord, ReidSplits
from rgsyn.data.rfw import read_rfw

__all__ = ["FaceRecord", "PairSet", "ReidRecord", "ReidSplits", "load_image", "read_bin",
           "read_cuhk03", "read_id_folders", "read_market1501", "read_pairs", "read_rfw",
           "read_verification"]
