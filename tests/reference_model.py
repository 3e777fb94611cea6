"""A slow, obviously-correct float64 numpy forward pass of a llama2.c model (the reference for lpu.runtime)."""

import numpy as np

from lpu.quant import QuantizedTensor


def _f64(w):
    return (w.dequantize() if isinstance(w, QuantizedTensor) else np.asarray(w)).astype(np.float64)


class ReferenceModel:
    def __init__(self, ckpt):
        self.c = c = ckpt.config
        self.w = {k: _f64(v) for k, v in ckpt.weights.items() if k != "q_tokens"}
        self.wcls = _f64(ckpt.classifier)
        self.k_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim))
        self.v_cache = np.zeros((c.n_layers, c.seq_len, c.kv_dim))

    @staticmethod
    def rmsnorm(x, w, eps):
        return w * x / np.sqrt(np.mean(x * x) + eps)

    def rope(self, v, pos):  # rotate adjacent pairs (2i, 2i+1) of each head
        hd = self.c.head_dim
        out = v.copy()
        for i in range(0, len(v), 2):
            freq = 1.0 / self.c.rope_theta ** ((i % hd) / hd)
            cos, sin = np.cos(pos * freq), np.sin(pos * freq)
            out[i], out[i + 1] = v[i] * cos - v[i + 1] * sin, v[i] * sin + v[i + 1] * cos
        return out

    def forward(self, token, pos):
        c, w = self.c, self.w
        x = w["token_embedding_table"][token].copy()
        hd, group = c.head_dim, c.n_heads // c.n_kv_heads
        for layer in range(c.n_layers):
            xb = self.rmsnorm(x, w["rms_att_weight"][layer], c.norm_eps)
            q = self.rope(w["wq"][layer] @ xb, pos)
            k = self.rope(w["wk"][layer] @ xb, pos)
            self.k_cache[layer, pos] = k
            self.v_cache[layer, pos] = w["wv"][layer] @ xb
            att = np.zeros(c.dim)
            for h in range(c.n_heads):
                g = h // group
                keys = self.k_cache[layer, : pos + 1, g * hd:(g + 1) * hd]
                scores = keys @ q[h * hd:(h + 1) * hd] / np.sqrt(hd)
                p = np.exp(scores - scores.max())
                p /= p.sum()
                att[h * hd:(h + 1) * hd] = p @ self.v_cache[layer, : pos + 1, g * hd:(g + 1) * hd]
            x = x + w["wo"][layer] @ att
            xb = self.rmsnorm(x, w["rms_ffn_weight"][layer], c.norm_eps)
            h1, h3 = w["w1"][layer] @ xb, w["w3"][layer] @ xb
            x = x + w["w2"][layer] @ (h1 / (1 + np.exp(-h1)) * h3)
        return self.wcls @ self.rmsnorm(x, w["rms_final_weight"], c.norm_eps)

    def greedy(self, ids, n_new):
        out, token = [], ids[0]
        for pos in range(len(ids) + n_new - 1):
            logits = self.forward(token, pos)
            token = ids[pos + 1] if pos < len(ids) - 1 else int(np.argmax(logits))
            if pos >= len(ids) - 1:
                out.append(token)
        return out
