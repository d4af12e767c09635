#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <pthread.h>
static inline uint64_t rng(uint64_t *s){ uint64_t x=*s; x^=x<<13; x^=x>>7; x^=x<<17; return *s=x; }
static inline void fillp(void *p, size_t n, uint64_t tag){ unsigned char *c=p; if(n==0)return; c[n-1]=(unsigned char)(tag>>8); c[0]=(unsigned char)tag; if(n>=16){ memcpy(c+n/2-4,&tag,8);} }
static inline void chkp(void *p, size_t n, uint64_t tag, const char *w){ unsigned char *c=p; if(n==0)return; int bad = c[0]!=(unsigned char)tag || (n>1 && c[n-1]!=(unsigned char)(tag>>8)); if(n>=16){ uint64_t t; memcpy(&t,c+n/2-4,8); bad|= t!=tag; } if(bad){ fprintf(stderr,"DATA CHECK FAILED in %s ptr=%p n=%zu\n",w,p,n); abort(); } }
#define CHK(p) do{ if(!(p)){ fprintf(stderr,"alloc returned NULL at %s:%d\n",__FILE__,__LINE__); abort(); } }while(0)
