#include "common.h"
// T threads (>> cores) each churning own small objects with small working set; optional 'waves' re-create threads
static long N; static int WS=256;
static void *w(void *a){ uint64_t s=(uintptr_t)a*13+1; void *p[256]={0}; size_t sz[256]={0}; for(long i=0;i<N;i++){ int k=rng(&s)%WS; if(p[k]){ chkp(p[k],sz[k],sz[k]*5+k,"many"); free(p[k]); } size_t z=8+rng(&s)%120; p[k]=malloc(z); CHK(p[k]); sz[k]=z; fillp(p[k],z,z*5+k);} for(int k=0;k<WS;k++) if(p[k]) free(p[k]); return 0; }
int main(int c,char**v){ int T=c>1?atoi(v[1]):48; N=c>2?atol(v[2]):200000; int waves=c>3?atoi(v[3]):1; pthread_t th[1024]; uint64_t seed=1; for(int r=0;r<waves;r++){ for(int i=0;i<T;i++) pthread_create(&th[i],0,w,(void*)(uintptr_t)(seed++)); for(int i=0;i<T;i++) pthread_join(th[i],0);} printf("ok\n"); return 0; }
