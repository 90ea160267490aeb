#!/usr/bin/python3
"""Generates golden.json, the PyTorch reference for model's golden tests.

Run from the repository root with Debian's python3-torch:
    /usr/bin/python3 model/testdata/golden.py > model/testdata/golden.json

It builds a small model (torch.nn.LSTMCell / torch.nn.LSTM encoder, a Linear
next-flow predictor from h_{t-1}, a Linear classifier over z = [h_t, x_hat_t])
with seeded weights, then records in float32:
  step:   one stateful step for B hosts from random (h, c): the anomaly score
          (mean squared error of predictor(h_{t-1}) against x_hat_t), the new
          (h, c), the embedding and the class probabilities;
  window: nn.LSTM over S sequences of T flows from given (h0, c0): embeddings,
          logits, predictions, the next-flow MSE and the cross-entropy
          (ignore_index=-1), and autograd's gradients of their sum with
          respect to every parameter and the raw inputs;
  clip:   torch.nn.utils.clip_grad_norm_ of those gradients;
  adamw:  three torch.optim.AdamW steps from the window's parameters, with
          decay on the weight matrices only, gradients scaled by 1, 2, 3.
"""
import json, sys
import torch

F, H, C = 6, 16, 4
B = 50          # crosses the step's chunk boundaries, with a tail tile
S, T = 3, 5

torch.manual_seed(1234)
cell = torch.nn.LSTMCell(F, H)
pred = torch.nn.Linear(H, F)
cls = torch.nn.Linear(H + F, C)
mean = torch.randn(F) * 3
std = torch.rand(F) * 2 + 0.5

def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]

params = {
    "lstm.weight_ih": cell.weight_ih, "lstm.weight_hh": cell.weight_hh,
    "lstm.bias_ih": cell.bias_ih, "lstm.bias_hh": cell.bias_hh,
    "predictor.weight": pred.weight, "predictor.bias": pred.bias,
    "classifier.weight": cls.weight, "classifier.bias": cls.bias,
}

def norm(x):
    return (x - mean) / std

# One streaming step.
h = torch.randn(B, H) * 0.5
c = torch.randn(B, H)
h[:3] = 0; c[:3] = 0  # hosts seen for the first time
x = mean + std * torch.randn(B, F) * 2
with torch.no_grad():
    xn = norm(x)
    anomaly = ((pred(h) - xn) ** 2).mean(1)
    h1, c1 = cell(xn, (h, c))
    z = torch.cat([h1, xn], 1)
    probs = torch.softmax(cls(z), 1)
step = {"b": B, "h": flat(h), "c": flat(c), "x": flat(x),
        "anomaly": flat(anomaly), "h_out": flat(h1), "c_out": flat(c1),
        "emb": flat(z), "probs": flat(probs)}

# A window with backpropagation through time.
lstm = torch.nn.LSTM(F, H, batch_first=True)
with torch.no_grad():
    lstm.weight_ih_l0.copy_(cell.weight_ih); lstm.weight_hh_l0.copy_(cell.weight_hh)
    lstm.bias_ih_l0.copy_(cell.bias_ih); lstm.bias_hh_l0.copy_(cell.bias_hh)
xw = (mean + std * torch.randn(S, T, F) * 1.5).requires_grad_()
h0 = torch.randn(S, H) * 0.3
c0 = torch.randn(S, H) * 0.3
labels = torch.randint(-1, C, (S, T))
xnw = norm(xw)
out, _ = lstm(xnw, (h0.unsqueeze(0), c0.unsqueeze(0)))          # S×T×H: h_t
hprev = torch.cat([h0.unsqueeze(1), out[:, :-1]], 1)             # h_{t-1}
pw = pred(hprev)
zw = torch.cat([out, xnw], 2)
logits = cls(zw)
mse = ((pw - xnw) ** 2).mean()
ce = torch.nn.functional.cross_entropy(logits.reshape(-1, C), labels.reshape(-1), ignore_index=-1)
(mse + ce).backward()
wparams = dict(params)
wparams.update({"lstm.weight_ih": lstm.weight_ih_l0, "lstm.weight_hh": lstm.weight_hh_l0,
                "lstm.bias_ih": lstm.bias_ih_l0, "lstm.bias_hh": lstm.bias_hh_l0})
window = {"s": S, "t": T, "x": flat(xw), "h0": flat(h0), "c0": flat(c0),
          "labels": [int(v) for v in labels.reshape(-1).tolist()],
          "emb": flat(zw), "logits": flat(logits), "pred": flat(pw),
          "predict_loss": float(mse), "class_loss": float(ce),
          "grads": {k: flat(v.grad) for k, v in wparams.items()},
          "dx": flat(xw.grad)}

# AdamW (decoupled decay on weight matrices only) and gradient clipping, from
# the window's parameters and gradients.
names = list(wparams)
grads = {k: v.grad.detach().clone() for k, v in wparams.items()}
clip_params = [torch.nn.Parameter(v.detach().clone()) for v in wparams.values()]
for p, k in zip(clip_params, names):
    p.grad = grads[k].clone()
norm = torch.nn.utils.clip_grad_norm_(clip_params, max_norm=0.5)
clip = {"max_norm": 0.5, "norm": float(norm), "grads": {k: flat(p.grad) for k, p in zip(names, clip_params)}}
opt_params = {k: torch.nn.Parameter(v.detach().clone()) for k, v in wparams.items()}
weights = [opt_params[k] for k in names if k.endswith("weight") or "weight_" in k]
biases = [opt_params[k] for k in names if not (k.endswith("weight") or "weight_" in k)]
opt = torch.optim.AdamW([{"params": weights, "weight_decay": 0.1},
                         {"params": biases, "weight_decay": 0.0}],
                        lr=0.01, betas=(0.9, 0.999), eps=1e-8)
for i in range(3):
    for k, p in opt_params.items():
        p.grad = grads[k] * (1 + i)  # vary the gradient across steps
    opt.step()
adamw = {"lr": 0.01, "weight_decay": 0.1, "steps": 3, "params": {k: flat(p) for k, p in opt_params.items()}}

json.dump({
    "generator": "model/testdata/golden.py",
    "torch": torch.__version__,
    "features": F, "hidden": H,
    "classes": ["benign", "scan", "beacon", "exfil"][:C],
    "norm_mean": flat(mean), "norm_std": flat(std),
    "params": {k: flat(v) for k, v in params.items()},
    "step": step, "window": window, "clip": clip, "adamw": adamw,
}, sys.stdout)
sys.stdout.write("\n")
