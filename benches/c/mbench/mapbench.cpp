#include <map>
#include <string>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>
// std::map<int,int> nodes (~40B) built & destroyed repeatedly; T threads
static void run(int id, int rounds, int n){ unsigned long long s=id*2654435761ULL+1; for(int r=0;r<rounds;r++){ std::map<long,long> m; for(int i=0;i<n;i++){ s^=s<<13; s^=s>>7; s^=s<<17; long k=(long)(s%(4ULL*n)); m[k]=k*3+1; }
  // erase half in random order, reinsert some, then verify
  for(int i=0;i<n/2;i++){ s^=s<<13; s^=s>>7; s^=s<<17; m.erase((long)(s%(4ULL*n))); }
  for(auto &kv: m) if(kv.second!=kv.first*3+1){ fprintf(stderr,"DATA CHECK FAILED map\n"); abort(); } } }
int main(int c,char**v){ int T=c>1?atoi(v[1]):1, rounds=c>2?atoi(v[2]):10, n=c>3?atoi(v[3]):200000; std::vector<std::thread> th; for(int i=0;i<T;i++) th.emplace_back(run,i+1,rounds,n); for(auto&t:th) t.join(); printf("ok\n"); }
