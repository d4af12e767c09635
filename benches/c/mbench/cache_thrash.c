#include "common.h"
static int objsz, reps, iters;
static void *w(void *a){ for(int i=0;i<iters;i++){ volatile char *p=malloc(objsz); CHK(p); for(int r=0;r<reps;r++) for(int k=0;k<objsz;k++) p[k]=(char)(p[k]+1+k); fillp((void*)p,objsz,i); chkp((void*)p,objsz,i,"thrash"); free((void*)p);} return 0; }
int main(int c,char**v){ int T=c>1?atoi(v[1]):2; iters=c>2?atoi(v[2]):1000; objsz=c>3?atoi(v[3]):8; reps=c>4?atoi(v[4]):1000; pthread_t th[256]; for(int i=0;i<T;i++) pthread_create(&th[i],0,w,0); for(int i=0;i<T;i++) pthread_join(th[i],0); printf("ok\n"); return 0; }
