"""Data parallelism vs intra-op threads for one training step of the tinycnn net on the same
libtorch as `tinycnn train` (the project venv's torch): one batch of 32 on 2 intra-op threads,
against two half batches of 16 on two Python threads with 1 intra-op thread each (gradients
accumulated into the same leaves, halves of the mean loss), one Adam step. Prints img/s,
alternating, 3 rounds.

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=268435456:glibc.malloc.trim_threshold=1073741824 \\
        .venv/bin/python bench/data_parallel_step.py fashion|tutorial
"""
import torch, time, threading, sys
import torch.nn.functional as F
preset=sys.argv[1]
torch.manual_seed(0)
B,(H,W,C),N=32,{"tutorial":(128,128,3),"fashion":(28,28,1)}[preset],10
convs,cin,h=[],C,H
for f in (32,32,64):
    convs.append(((torch.randn(f,cin,3,3)*0.05).requires_grad_(),torch.full((f,),0.05).requires_grad_())); cin,h=f,(h+1)//2
fc1=((torch.randn(128,cin*h*h)*0.05).requires_grad_(),torch.full((128,),0.05).requires_grad_())
fc2=((torch.randn(N,128)*0.05).requires_grad_(),torch.full((N,),0.05).requires_grad_())
params=[p for l in convs+[fc1,fc2] for p in l]
opt=torch.optim.Adam(params,lr=1e-4,foreach=False)
pixels=torch.randint(0,256,(B,H,W,C),dtype=torch.uint8); targets=torch.arange(B)%N
def fb(px,tg,scale):
    x=px.float().div(255).permute(0,3,1,2)
    for w,b in convs: x=F.relu(F.max_pool2d(F.conv2d(x,w,b,padding=1),2,2,0,1,True))
    x=x.contiguous().flatten(1); x=F.linear(F.relu(F.linear(x,*fc1)),*fc2)
    loss=F.cross_entropy(x,tg)*scale; loss.backward(); return loss.item()
def step_single():
    opt.zero_grad(); fb(pixels,targets,1.0); opt.step()
def worker(i,bar,go):
    torch.set_num_threads(1)
    while True:
        go[i].wait(); go[i].clear()
        if stop[0]: return
        fb(pixels[i*16:(i+1)*16],targets[i*16:(i+1)*16],0.5); bar.wait()
stop=[False]; bar=threading.Barrier(3); go=[threading.Event(),threading.Event()]
ths=[threading.Thread(target=worker,args=(i,bar,go)) for i in range(2)]
for t in ths: t.start()
def step_dp():
    opt.zero_grad()
    for g in go: g.set()
    bar.wait(); opt.step()
n=20 if preset=="tutorial" else 200
for r in range(3):
    for name,fn,th in (("intra-op 2",step_single,2),("data-parallel 2x1",step_dp,1)):
        torch.set_num_threads(th)
        for _ in range(3): fn()
        t=time.perf_counter()
        for _ in range(n): fn()
        print(f"{preset} {name:20} {B*n/(time.perf_counter()-t):.1f} img/s",flush=True)
stop[0]=True
for g in go: g.set()
