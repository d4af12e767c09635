#include "common.h"
// string builders grown by realloc with small appends; several live at once; occasional huge one
int main(int c,char**v){ int rounds=c>1?atoi(v[1]):200; int NB=c>2?atoi(v[2]):64; uint64_t s=9; char **b=calloc(NB,sizeof(char*)); size_t *len=calloc(NB,sizeof(size_t)), *cap=calloc(NB,sizeof(size_t)); int T=1;
 for(int r=0;r<rounds;r++){ size_t target_max = (r%10==0)? (4u<<20) : (64u<<10);
  for(int k=0;k<NB;k++){ size_t tgt= 16 + rng(&s)% target_max; if(k>2 && r%10==0) tgt%= 65536; while(len[k]<tgt){ size_t add=1+rng(&s)%48; size_t nl=len[k]+add; /* exact-fit realloc like naive code */ char *nb=realloc(b[k],nl+1); CHK(nb); if(len[k] && (nb[0]!=(char)('a'+k%26) || (len[k]>1 && nb[len[k]-1]!=(char)('a'+(len[k]-1)%26)))){ fprintf(stderr,"DATA CHECK FAILED realloc\n"); abort(); } for(size_t i=len[k];i<nl;i++) nb[i]=(char)('a'+(i==0?k%26:i%26)); nb[nl]=0; b[k]=nb; len[k]=nl; }
   // verify then shrink
   for(size_t i=1;i<len[k];i+=4093) if(b[k][i]!=(char)('a'+i%26)){ fprintf(stderr,"DATA CHECK FAILED realloc2\n"); abort(); }
   if(rng(&s)%2){ free(b[k]); b[k]=0; len[k]=0; } else { size_t nl=len[k]/4; char *nb=realloc(b[k],nl+1); CHK(nb); b[k]=nb; len[k]=nl; nb[nl]=0; }
  } }
 for(int k=0;k<NB;k++) free(b[k]); (void)cap;(void)T; printf("ok\n"); return 0; }
