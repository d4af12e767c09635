#include "common.h"
// N producer/consumer pairs; producer allocates batches of blocks, pushes to a lock-protected batch list; consumer frees.
#define BATCH 4096
typedef struct batch { struct batch *next; int n; void *p[BATCH]; size_t sz[BATCH]; } batch;
static pthread_mutex_t mu=PTHREAD_MUTEX_INITIALIZER; static pthread_cond_t cv=PTHREAD_COND_INITIALIZER;
static batch *head; static int nbatches; static long iters; static int done_prod; static int nprod;
static void *prod(void *a){ uint64_t s=(uintptr_t)a*7919+1; for(long it=0; it<iters; it++){ batch *b=malloc(sizeof(batch)); CHK(b); b->n=BATCH; for(int i=0;i<BATCH;i++){ size_t sz=8+(rng(&s)%120); if(rng(&s)%64==0) sz=256+rng(&s)%1800; b->p[i]=malloc(sz); CHK(b->p[i]); b->sz[i]=sz; fillp(b->p[i],sz,(uintptr_t)b->p[i]^sz);} pthread_mutex_lock(&mu); while(nbatches>64) pthread_cond_wait(&cv,&mu); b->next=head; head=b; nbatches++; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu);} pthread_mutex_lock(&mu); done_prod++; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu); return 0; }
static void *cons(void *a){ for(;;){ pthread_mutex_lock(&mu); while(!head && done_prod<nprod) pthread_cond_wait(&cv,&mu); batch *b=head; if(!b){ pthread_mutex_unlock(&mu); return 0;} head=b->next; nbatches--; pthread_cond_broadcast(&cv); pthread_mutex_unlock(&mu); for(int i=0;i<b->n;i++){ chkp(b->p[i],b->sz[i],(uintptr_t)b->p[i]^b->sz[i],"xmalloc"); free(b->p[i]); } free(b);} }
int main(int c,char**v){ int T=c>1?atoi(v[1]):4; iters=c>2?atol(v[2]):100; nprod=T/2; pthread_t th[64]; for(int i=0;i<nprod;i++) pthread_create(&th[i],0,prod,(void*)(uintptr_t)(i+1)); for(int i=0;i<T-nprod;i++) pthread_create(&th[nprod+i],0,cons,0); for(int i=0;i<T;i++) pthread_join(th[i],0); printf("ok\n"); return 0; }
