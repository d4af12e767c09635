#include "common.h"
#define NS 2000
int main(int c,char**v){ long N=c>1?atol(v[1]):20000000; static void *p[NS]; static size_t sz[NS]; uint64_t s=42; for(long i=0;i<N;i++){ int k=rng(&s)%NS; if(p[k]){ chkp(p[k],sz[k],sz[k]*31+k,"simple"); free(p[k]);} size_t n=1+rng(&s)%256; p[k]=malloc(n); CHK(p[k]); sz[k]=n; fillp(p[k],n,n*31+k);} for(int k=0;k<NS;k++){ if(p[k]){chkp(p[k],sz[k],sz[k]*31+k,"simple"); free(p[k]);}} printf("ok\n"); return 0; }
