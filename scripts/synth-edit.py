"""A synthesized F32 model rewritten as some real files of its family are, for scripts/arch-check:
string metadata added (llama.cpp's synthesizer takes numbers only), and with --fuse-qkv every
layer's attn_q/attn_k/attn_v replaced by one attn_qkv (rows Q, then K, then V), as Phi-3 files
have it. Run with the gguf package of the synthesizer's venv.
Usage: synth-edit.py IN.gguf OUT.gguf [--fuse-qkv] [.key=value ...]   ('.' = the "ARCH." prefix;
values that parse as numbers are f32 (with '.') or u32, the others strings)"""
import re
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter


def copy_field(w, f):
    t = f.types[0]
    if t == GGUFValueType.ARRAY:
        if len(f.types) < 2:
            return
        if f.types[1] == GGUFValueType.STRING:
            w.add_array(f.name, [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data])
        else:
            w.add_array(f.name, [f.parts[i][0].item() for i in f.data])
    elif t == GGUFValueType.STRING:
        w.add_string(f.name, bytes(f.parts[f.data[0]]).decode("utf-8"))
    else:
        w.add_key_value(f.name, f.parts[f.data[0]][0].item(), t)


def add(w, arch, kv):
    k, v = kv.split("=", 1)
    k = arch + k if k.startswith(".") else k
    if re.fullmatch(r"\d+", v):
        w.add_uint32(k, int(v))
    elif re.fullmatch(r"[-+]?\d*\.\d*(e[-+]?\d+)?", v):
        w.add_float32(k, float(v))
    else:
        w.add_string(k, v)


def main():
    src, out, *args = sys.argv[1:]
    fuse = "--fuse-qkv" in args
    r = GGUFReader(src)
    arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
    w = GGUFWriter(out, arch)
    for f in r.fields.values():
        if not f.name.startswith("GGUF.") and f.name != "general.architecture":
            copy_field(w, f)
    for kv in args:
        if kv != "--fuse-qkv":
            add(w, arch, kv)
    by_name = {t.name: t for t in r.tensors}
    fused = set()
    for t in r.tensors:
        assert t.tensor_type == 0, f"{t.name}: F32 input expected"
        m = re.fullmatch(r"blk\.(\d+)\.attn_[qkv]\.weight", t.name)
        if fuse and m:
            il = m.group(1)
            if il not in fused:
                fused.add(il)
                parts = [np.asarray(by_name[f"blk.{il}.attn_{x}.weight"].data) for x in "qkv"]
                w.add_tensor(f"blk.{il}.attn_qkv.weight", np.concatenate(parts, axis=0).astype(np.float32))
            continue
        w.add_tensor(t.name, np.asarray(t.data).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


main()
