/*
 * sgemm_openblas.c: OpenBLAS's sgemm on the step's gate product, to hold
 * against BenchmarkGemm (model/bench_test.go). This is the measurement behind
 * having no cgo/OpenBLAS build: on the reference machine OpenBLAS ran this
 * shape at 139-143 GFLOP/s on one thread, the AVX-512 kernel at 136-146.
 *
 *   apt-get install -y libopenblas-dev
 *   gcc -O2 -I/usr/include/x86_64-linux-gnu/openblas-pthread \
 *       model/testdata/sgemm_openblas.c -o /tmp/sgemm -lopenblas
 *   OPENBLAS_NUM_THREADS=1 /tmp/sgemm 4080 256 96
 *   GOMAXPROCS=1 go test ./model -run XXX -bench Gemm
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <cblas.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(int argc,char**argv){
  int m=atoi(argv[1]),n=atoi(argv[2]),k=atoi(argv[3]);
  float*a=malloc(4*m*k),*b=malloc(4*k*n),*c=malloc(4*m*n);
  for(int i=0;i<m*k;i++)a[i]=rand()/(float)RAND_MAX;
  for(int i=0;i<k*n;i++)b[i]=rand()/(float)RAND_MAX;
  double best=0;
  for(int rep=0;rep<5;rep++){
    int it=0; double t0=now();
    while(now()-t0<0.5){cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,m,n,k,1,a,k,b,n,0,c,n);it++;}
    double g=2.0*m*n*k*it/(now()-t0)/1e9; if(g>best)best=g;
  }
  printf("openblas sgemm %dx%dx%d: %.1f GFLOP/s (best of 5)\n",m,n,k,best);
}
