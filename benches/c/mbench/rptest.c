#include "common.h"
#include <stdatomic.h>
// thread pairs passing blocks through single-producer/single-consumer rings, both directions; each thread also keeps a local working set
#define RING 4096
typedef struct { _Atomic size_t head, tail; void *p[RING]; size_t sz[RING]; } ring;
static long N; static int T; static ring *rings;
static int push(ring *r, void *p, size_t n){ size_t h=atomic_load_explicit(&r->head,memory_order_relaxed), t=atomic_load_explicit(&r->tail,memory_order_acquire); if(h-t>=RING) return 0; r->p[h%RING]=p; r->sz[h%RING]=n; atomic_store_explicit(&r->head,h+1,memory_order_release); return 1; }
static int pop(ring *r, void **p, size_t *n){ size_t t=atomic_load_explicit(&r->tail,memory_order_relaxed), h=atomic_load_explicit(&r->head,memory_order_acquire); if(t==h) return 0; *p=r->p[t%RING]; *n=r->sz[t%RING]; atomic_store_explicit(&r->tail,t+1,memory_order_release); return 1; }
static size_t pick(uint64_t *s){ uint64_t r=rng(s)%1000; if(r<700) return 16+rng(s)%112; if(r<950) return 128+rng(s)%896; if(r<995) return 1024+rng(s)%15360; return 16384+rng(s)%65536; }
#define WS 2048
static void *w(void *a){ int id=(intptr_t)a; int peer=id^1; ring *out=&rings[id], *in=&rings[peer]; uint64_t s=id*131+5; void *loc[WS]={0}; size_t lsz[WS]={0};
 for(long i=0;i<N;i++){ void *q; size_t n; while(pop(in,&q,&n)){ chkp(q,n,n*3+1,"rp-in"); free(q);} size_t z=pick(&s); void *p=malloc(z); CHK(p); fillp(p,z,z*3+1); if(rng(&s)&1){ if(!push(out,p,z)){ free(p);} } else { int k=rng(&s)%WS; if(loc[k]){ chkp(loc[k],lsz[k],lsz[k]*3+1,"rp-loc"); free(loc[k]);} loc[k]=p; lsz[k]=z; } }
 for(int k=0;k<WS;k++) if(loc[k]) free(loc[k]); return 0; }
int main(int c,char**v){ T=c>1?atoi(v[1]):4; if(T&1)T++; N=c>2?atol(v[2]):2000000; rings=calloc(T,sizeof(ring)); pthread_t th[256]; for(int i=0;i<T;i++) pthread_create(&th[i],0,w,(void*)(intptr_t)i); for(int i=0;i<T;i++) pthread_join(th[i],0); for(int i=0;i<T;i++){ void*q; size_t n; while(pop(&rings[i],&q,&n)){ chkp(q,n,n*3+1,"rp-end"); free(q);} } printf("ok\n"); return 0; }
