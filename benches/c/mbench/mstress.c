#include "common.h"
#include <stdatomic.h>
// modelled on mimalloc-bench stress.c: threads alloc/free, transfer objects through a shared array, skewed sizes, occasional big blocks; threads re-created each round
#define TRANSFERS 1000
static _Atomic(uintptr_t) transfer[TRANSFERS]; static int SCALE, ITER, T;
static void *alloc_items(size_t items, uint64_t *s){ if(rng(s)%100==0) items*=50; if(items==40) items++; uintptr_t *p=malloc(items*sizeof(uintptr_t)); CHK(p); p[0]=items; for(size_t i=1;i<items;i++) p[i]=items^(i*0x9e3779b97f4a7c15ULL); return p; }
static void free_items(uintptr_t *p){ if(!p) return; size_t items=p[0]; for(size_t i=1;i<items;i++) if(p[i]!=(items^(i*0x9e3779b97f4a7c15ULL))){ fprintf(stderr,"DATA CHECK FAILED mstress\n"); abort(); } free(p); }
static size_t pick(uint64_t *s){ uint64_t r=rng(s)%1000; if(r<600) return 1+rng(s)%8; if(r<900) return 8+rng(s)%32; if(r<990) return 40+rng(s)%200; return 240+rng(s)%1000; }
static void *w(void *a){ uint64_t s=(uintptr_t)a*0x51ed27+1; size_t cap=SCALE, n=0; uintptr_t **data=calloc(cap,sizeof(void*)); size_t rn=SCALE/2; uintptr_t **retain=calloc(rn,sizeof(void*)); for(size_t i=0;i<rn;i++) retain[i]=alloc_items(pick(&s),&s);
 for(int k=0;k<ITER*SCALE;k++){ uint64_t r=rng(&s)%100; if(r<30 || n==0){ if(n==cap){ cap*=2; data=realloc(data,cap*sizeof(void*)); CHK(data);} data[n++]=alloc_items(pick(&s),&s);} else if(r<55){ size_t i=rng(&s)%n; free_items(data[i]); data[i]=data[--n]; } else if(r<75){ size_t i=rng(&s)%n; uintptr_t old=atomic_exchange(&transfer[rng(&s)%TRANSFERS],(uintptr_t)data[i]); if(old) data[i]=(uintptr_t*)old; else data[i]=data[--n]; } else { size_t i=rng(&s)%rn; free_items(retain[i]); retain[i]=alloc_items(pick(&s),&s);} }
 for(size_t i=0;i<n;i++) free_items(data[i]); for(size_t i=0;i<rn;i++) free_items(retain[i]); free(data); free(retain); return 0; }
int main(int c,char**v){ T=c>1?atoi(v[1]):4; SCALE=c>2?atoi(v[2]):1000; int rounds=c>3?atoi(v[3]):10; ITER=c>4?atoi(v[4]):10; pthread_t th[256]; uint64_t seed=1; for(int r=0;r<rounds;r++){ for(int i=0;i<T;i++) pthread_create(&th[i],0,w,(void*)(uintptr_t)(seed++)); for(int i=0;i<T;i++) pthread_join(th[i],0);} for(int i=0;i<TRANSFERS;i++) free_items((uintptr_t*)atomic_exchange(&transfer[i],0)); printf("ok\n"); return 0; }
