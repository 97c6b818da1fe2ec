"""Steady-state training speed without Spark: epochs of train_network on synthetic CSR rows.

    .venv/bin/python bench/bench_fit_epochs.py

16,000 positions in documents of 100, 20 non-zeros a row, BiLSTM 64 units x 2
layers, window 50, batch 32, 3 epochs; prints each epoch's seconds (the first
one pays tracing) and the median of the later ones as positions/s, for
4,096 dims without and with the projection (E=64) and 2^18 dims with it.
"""

import time

import keras
import numpy as np

from skol_spark.training import TrainingConfig, train_network
from skol_spark.training_data import FeatureRows, TrainingData

rng=np.random.default_rng(0)
def data(n, D, nnz=20):
    idx=np.sort(rng.integers(0,D,(n,nnz)),axis=1).astype(np.int32)
    indptr=np.arange(0,(n+1)*nnz,nnz)
    return TrainingData(FeatureRows(np.arange(n), D, csr=(indptr, idx.ravel(), rng.random(n*nnz).astype(np.float32))), rng.integers(0,3,n), np.full(n//100,100))
class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, e, logs=None): self.t=time.perf_counter()
    def on_epoch_end(self, e, logs=None): self.times.append(time.perf_counter()-self.t)
orig=keras.Model.fit
def fit(self,*a,**k):  # time the epochs of the fit train_network runs
    k["callbacks"]=list(k.get("callbacks",[]))+[timer]; return orig(self,*a,**k)
keras.Model.fit=fit
n=16000
for D,E in [(4096,0),(4096,64),(2**18,64)]:
    timer=EpochTimer(); timer.times=[]
    cfg=TrainingConfig(window_size=50,num_classes=3,class_weights=[1,1,1],hidden_size=64,embedding_size=E,num_layers=2,dropout=0.0,epochs=3,batch_size=32,learning_rate=1e-3,seed=0,validation_fraction=0.0,predict_batch_size=256)
    train_network(data(n,D),cfg)
    print(f"D={D} E={E}: epoch seconds {['%.1f'%t for t in timer.times]}, steady {n/np.median(timer.times[1:]):.0f} positions/s", flush=True)
