import sys, torch
import bsafusion.train.trainer as T
import bsafusion.losses as L
stash = {}
_deform = T.deform
def deform(*a, **k):
    r = _deform(*a, **k); stash["gt"] = r[1]; return r
T.deform = deform
variant = sys.argv[1]
if variant == "label":
    orig = L.BSAFusionLoss.__init__
    def init(self, *a, **k):
        k["fusion_target"] = "label"; orig(self, *a, **k)
    L.BSAFusionLoss.__init__ = init
from bsafusion.config import TrainConfig
from bsafusion.data.pairs import load_pairs
from bsafusion.model import BSAFusion
torch.set_num_threads(1)
steps, bs, size = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfg = TrainConfig(pair="ct", data_dir="/work/main/.cache/aanlib", image_size=size)
torch.manual_seed(0)
model = BSAFusion(cfg.model).train()
opt = torch.optim.Adam(T.param_groups(model, cfg), lr=cfg.lr)
data = load_pairs(cfg.data_dir, "CT", "train", image_size=size)
gen = torch.Generator().manual_seed(0)
crit = L.BSAFusionLoss()
n = data.fixed.shape[0]
acc = []
for s in range(steps):
    idx = torch.randint(0, n, (bs,), generator=gen)
    t = T.training_step(model, crit, opt, data.fixed[idx], data.moving[idx], config=cfg, generator=gen)
    v = dict(zip(T.TERMS, (t[:-1] / t[-1]).tolist()))
    ident = float(stash["gt"].norm(dim=1).mean())
    acc.append(v["epe"] / ident)
    print(f"{variant} step {s} epe {v['epe']:.2f} id {ident:.2f} ratio {v['epe']/ident:.3f} avg10 {sum(acc[-10:])/len(acc[-10:]):.3f} reg {v['reg']:.3f} fus {v['fus']:.3f}", flush=True)
