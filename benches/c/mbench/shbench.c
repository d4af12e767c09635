#include "common.h"
// sh6bench: each thread repeatedly allocates arrays of blocks of sizes in [min,max], frees in forward, reverse, and interleaved order
// sh8 mode (cross=1): half of each batch is handed to the next thread for freeing
static long iters; static int cross, T; static size_t minsz=1, maxsz=1000;
typedef struct { pthread_mutex_t m; void **q; size_t *qs; int qn, qcap; } xq;
static xq *qs;
static void drain(int id){ xq *q=&qs[id]; pthread_mutex_lock(&q->m); for(int i=0;i<q->qn;i++){ chkp(q->q[i],q->qs[i],q->qs[i]*7,"sh8x"); free(q->q[i]); } q->qn=0; pthread_mutex_unlock(&q->m); }
static void give(int to, void *p, size_t n){ xq *q=&qs[to]; pthread_mutex_lock(&q->m); if(q->qn==q->qcap){ q->qcap=q->qcap?q->qcap*2:1024; q->q=realloc(q->q,q->qcap*sizeof(void*)); q->qs=realloc(q->qs,q->qcap*sizeof(size_t)); CHK(q->q&&q->qs);} q->q[q->qn]=p; q->qs[q->qn++]=n; pthread_mutex_unlock(&q->m); }
static void *w(void *a){ int id=(intptr_t)a; uint64_t s=id*977+3; int cnt=1000; void **p=malloc(sizeof(void*)*cnt*4); size_t *sz=malloc(sizeof(size_t)*cnt*4);
 for(long it=0; it<iters; it++){ int n=cnt + rng(&s)%(3*cnt); size_t range=maxsz-minsz; size_t base= minsz + (it*37)%(range?range:1);
  for(int i=0;i<n;i++){ size_t z=base + rng(&s)%(range/8+1); if(z>maxsz) z=minsz+rng(&s)%16; p[i]=malloc(z); CHK(p[i]); sz[i]=z; fillp(p[i],z,z*7); }
  int mode=it%3;
  for(int j=0;j<n;j++){ int i = mode==0? j : mode==1? n-1-j : (j<n/2? 2*j : 2*(j-n/2)+1); if(i>=n) i=n-1-(j-n/2); if(!p[i]) continue; chkp(p[i],sz[i],sz[i]*7,"sh6");
     if(cross && (i&1)) give((id+1)%T,p[i],sz[i]); else free(p[i]); p[i]=0; }
  for(int i=0;i<n;i++) if(p[i]){ chkp(p[i],sz[i],sz[i]*7,"sh6b"); free(p[i]); p[i]=0; }
  if(cross) drain(id);
 } free(p); free(sz); return 0; }
int main(int c,char**v){ T=c>1?atoi(v[1]):2; iters=c>2?atol(v[2]):1000; cross=c>3?atoi(v[3]):0; if(c>5){minsz=atol(v[4]);maxsz=atol(v[5]);} qs=calloc(T,sizeof(xq)); for(int i=0;i<T;i++) pthread_mutex_init(&qs[i].m,0); pthread_t th[256]; for(int i=0;i<T;i++) pthread_create(&th[i],0,w,(void*)(intptr_t)i); for(int i=0;i<T;i++) pthread_join(th[i],0); for(int i=0;i<T;i++) drain(i); printf("ok\n"); return 0; }
