#include "common.h"
// modelled on alloc-test (ithare): live set of slots, random replace, size distribution ~ 1/x from 8B to 128KB (some calloc)
static long N; static int WS;
static size_t pick(uint64_t *s){ int b=rng(s)%14; /* 2^3..2^16 */ size_t lo=(size_t)1<<(b+3); size_t z=lo+rng(s)%lo; uint64_t r=rng(s)%100; if(r<70) z=8+rng(s)%(56+ (z>>4)); return z; }
static void *w(void *a){ uint64_t s=(uintptr_t)a*7+11; void **p=calloc(WS,sizeof(void*)); size_t *sz=calloc(WS,sizeof(size_t)); for(long i=0;i<N;i++){ int k=rng(&s)%WS; if(p[k]){ chkp(p[k],sz[k],sz[k]+k,"alloc-test"); free(p[k]); } size_t z=pick(&s); p[k]= (i&7)==0? calloc(1,z) : malloc(z); CHK(p[k]); if((i&7)==0 && ((char*)p[k])[z-1]!=0){ fprintf(stderr,"DATA CHECK FAILED calloc not zero\n"); abort(); } sz[k]=z; fillp(p[k],z,z+k);} for(int k=0;k<WS;k++) if(p[k]) free(p[k]); free(p); free(sz); return 0; }
int main(int c,char**v){ int T=c>1?atoi(v[1]):1; N=c>2?atol(v[2]):5000000; WS=c>3?atoi(v[3]):8192; pthread_t th[256]; for(int i=0;i<T;i++) pthread_create(&th[i],0,w,(void*)(uintptr_t)(i+1)); for(int i=0;i<T;i++) pthread_join(th[i],0); printf("ok\n"); return 0; }
